"""store/ingest.py and store/links.py: the one way in and the one link fallback, on a real directory."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from releasecache.errors import IntegrityError
from releasecache.store import Store
from releasecache.store.ingest import download_partial, download_sidecar, ingest_file
from releasecache.store.layers import import_blob
from releasecache.store.links import REFUSED, try_links
from releasecache.utils import hash_file

DATA = b"some verified bytes\n" * 50


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "source.bin"
    path.write_bytes(DATA)
    return path


def test_copy_in_publishes_a_read_only_blob_and_leaves_nothing_partial(tmp_path, source):
    store = Store(tmp_path / "cache")
    h = hash_file(source)
    seen = []
    done = ingest_file(store, source, h, tag="adopt", progress=seen.append)
    assert done.outcome == "copy" and done.actual == h and seen == [len(DATA)]
    blob = store.blob_path(h)
    assert blob.read_bytes() == DATA and not stat.S_IMODE(blob.stat().st_mode) & 0o222
    assert os.listdir(store.partial_dir) == []
    assert ingest_file(store, source, h).outcome == "present"
    assert source.read_bytes() == DATA  # the source is untouched


def test_hardlink_in_shares_the_inode(tmp_path, source):
    store = Store(tmp_path / "cache")
    h = hash_file(source)
    assert ingest_file(store, source, h, hardlink=True, tag="adopt").outcome == "hardlink"
    assert store.blob_path(h).stat().st_ino == source.stat().st_ino


def test_mismatch_publishes_nothing(tmp_path, source):
    store = Store(tmp_path / "cache")
    wrong = "ab" * 64
    done = ingest_file(store, source, wrong)
    assert done.outcome == "mismatched" and done.actual == hash_file(source)
    assert not store.has_blob(wrong) and os.listdir(store.partial_dir) == []


def test_layer_blob_that_lies_about_its_name_is_refused(tmp_path, source):
    store = Store(tmp_path / "cache", layer_link="copy")
    with pytest.raises(IntegrityError, match="does not match its name"):
        import_blob(store, source, "cd" * 64)
    assert not store.has_blob("cd" * 64)


def test_partial_files_are_named_in_one_place(tmp_path):
    store = Store(tmp_path / "cache")
    h = "ef" * 64
    assert store.partial_path(h) == download_partial(store.partial_dir, h) == store.partial_dir / h
    assert store.sidecar_path(h) == download_sidecar(store.partial_dir, h) == store.partial_dir / f"{h}.json"


def test_try_links_prefers_a_symlink_then_a_hard_link(tmp_path, source):
    assert try_links(tmp_path / "s", source, symlink_target="source.bin") == "symlink"
    assert os.readlink(tmp_path / "s") == "source.bin"
    assert try_links(tmp_path / "h", source) == "hardlink"
    assert (tmp_path / "h").stat().st_ino == source.stat().st_ino
    assert try_links(tmp_path / "n", source, hardlink=False) is None


def test_try_links_raises_what_is_not_a_refusal(tmp_path, source):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(FileExistsError):  # EEXIST is a real error, not "this filesystem refuses links"
        try_links(tmp_path / "taken", source)
    assert errno.EEXIST not in REFUSED and errno.EXDEV in REFUSED
