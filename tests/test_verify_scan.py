"""Fast verify of every blob (one directory scan, one lstat and one stamp read per blob) still
catches each kind of damage; gc's usage window decides what a dry run would delete."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from releasecache.store.perms import check_tree
from tests.support.fixtures.toy import PROJECT

from ._reliability import blake, load, open_cache


@pytest.fixture
def filled(tmp_path, toy_bucket):
    cache = open_cache(tmp_path / "c", toy_bucket, manifest=toy_bucket.names[0])
    assert cache.prefetch(progress=False).ok
    first = cache.verify()
    assert first.ok and first.hashed == 0 and first.checked == len(list(cache.store.iter_blobs())) >= 10
    return cache


def _victim(cache):
    entry = cache.data_entry(1)
    return entry, cache.store.blob_path(entry.file_hash)


def _rewrite(blob: Path, data: bytes, *, keep_mtime: bool, same_inode: bool) -> None:
    st = os.stat(blob)
    if same_inode:
        os.chmod(blob, 0o644)
        with open(blob, "r+b") as fh:
            fh.truncate(0)
            fh.write(data)
        os.chmod(blob, 0o444)
    else:  # a new file moved over it (what a restore or a careless tool does)
        tmp = blob.with_name(blob.name + ".new")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o444)
        os.replace(tmp, blob)
    if keep_mtime:
        os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("scope", ["every blob", "the manifest"])
@pytest.mark.parametrize("damage", ["truncated", "grown", "replaced, same size and mtime", "edited, same size"])
def test_fast_verify_catches_each_kind_of_damage(filled, damage, scope):
    cache = filled
    entry, blob = _victim(cache)
    data = blob.read_bytes()
    if damage == "truncated":
        _rewrite(blob, data[: len(data) // 2], keep_mtime=True, same_inode=True)
    elif damage == "grown":
        _rewrite(blob, data + b"more", keep_mtime=True, same_inode=True)
    elif damage == "replaced, same size and mtime":
        _rewrite(blob, bytes(b ^ 0x55 for b in data), keep_mtime=True, same_inode=False)
    else:
        _rewrite(blob, data[:-1] + bytes([data[-1] ^ 1]), keep_mtime=False, same_inode=True)
    report = cache.verify() if scope == "every blob" else cache.verify(cache.manifest.name)
    assert not report.ok
    [bad] = report.corrupt
    assert bad["file_hash"] == entry.file_hash and bad["quarantined_to"] and not blob.exists()
    assert report.intact == report.checked - 1
    assert report.hashed <= 1  # only the damaged blob's bytes were read (a size mismatch needs none)
    assert not os.path.lexists(cache.store.view_path(cache.manifest.view_dir_name, entry.relative_path))
    assert blake(cache.download_data(1)) == entry.file_hash  # fetched again
    assert cache.verify().ok


def test_fast_verify_reports_a_blob_whose_mode_changed_and_fix_repairs_it(filled):
    cache = filled
    entry, blob = _victim(cache)
    os.chmod(blob, 0o644)  # writable: anyone with write access could now change it in place
    report = cache.verify()
    assert not report.ok and not report.corrupt
    [problem] = report.permissions
    assert problem["path"] == str(blob.relative_to(cache.cache_dir)) and "read-only" in problem["problem"]
    fixed = cache.verify(fix_permissions=True)
    assert fixed.ok and fixed.permissions_fixed == [problem["path"]]
    assert os.stat(blob).st_mode & 0o777 == 0o444


def test_check_tree_takes_known_stats_for_what_it_walks(filled):
    cache = filled
    _entry, blob = _victim(cache)
    os.chmod(blob, 0o644)
    plain = check_tree(cache.cache_dir)
    assert [p.path for p in plain] == [str(blob.relative_to(cache.cache_dir))]
    # a stat the caller took stands for the one the walk would take
    clean = os.lstat(cache.store.blob_path(cache.data_entry(0).file_hash))
    assert check_tree(cache.cache_dir, {str(blob): clean}) == []


@pytest.mark.parametrize("stamp_is", ["missing", "garbage", "a directory", "a fifo", "a symlink", "huge"])
def test_fast_verify_rehashes_a_blob_whose_stamp_is_unusable(filled, stamp_is):
    cache = filled
    entry, blob = _victim(cache)
    stamp = cache.store.stamps_dir / entry.file_hash[:2] / entry.file_hash
    good = stamp.read_bytes()
    stamp.unlink()
    if stamp_is == "garbage":
        stamp.write_bytes(b"\x00not json")
    elif stamp_is == "a directory":
        stamp.mkdir()
    elif stamp_is == "a fifo":
        os.mkfifo(stamp)  # must not block the verify
    elif stamp_is == "a symlink":
        elsewhere = stamp.with_name("elsewhere")
        elsewhere.write_bytes(good)
        os.symlink(elsewhere.name, stamp)  # never followed: a stamp is a regular file
    elif stamp_is == "huge":
        stamp.write_bytes(good[:-1] + b" " * 5000 + b"}")
    report = cache.verify()
    assert report.ok and report.hashed == 1 and report.intact == report.checked
    if stamp_is in ("missing", "garbage", "huge"):
        again = cache.verify()
        assert again.ok and again.hashed == 0  # stamped again after hashing


def test_fast_verify_lists_only_regular_blob_files(filled):
    cache = filled
    _entry, blob = _victim(cache)
    before = cache.verify().checked
    folder = blob.parent
    os.symlink(blob.name, folder / (folder.name + "0" * 126))  # a link named like a blob
    (folder / (folder.name + "1" * 126)).mkdir()  # a directory named like one
    report = cache.verify()
    assert report.ok and report.checked == before and report.hashed == 0


def test_gc_dry_run_keeps_a_version_used_within_the_window(tmp_path, toy_bucket):
    v1, _v2, v3 = toy_bucket.names
    cache = open_cache(tmp_path / "c", toy_bucket, manifest=v1)
    assert cache.prefetch(progress=False).ok
    load(cache, v3)
    assert cache.prefetch(progress=False).ok
    needed = {e.file_hash for e in cache.get_manifest(v3).entries()}
    only_v1 = {e.file_hash for e in cache.get_manifest(v1).entries()} - needed
    assert only_v1 and all(cache.store.has_own_blob(h) for h in only_v1)

    # 0.1.0 was loaded a moment ago, so the default 30-day window keeps it: nothing would go.
    windowed = cache.gc(keep=[v3])
    assert windowed.deleted_blobs == [] and windowed.removed_views == []
    [rec] = [r for r in windowed.manifests if r["name"] == v1]
    assert rec["kept"] and "window" in rec["why"]
    # Without the window, exactly the blobs only 0.1.0 references would go, and nothing is touched.
    dry = cache.gc(keep=[v3], window_days=0)
    assert set(dry.deleted_blobs) == only_v1 and dry.removed_views == [f"{PROJECT}-0.1.0"]
    [rec] = [r for r in dry.manifests if r["name"] == v1]
    assert not rec["kept"] and rec["blobs"] == len(only_v1)
    assert all(cache.store.has_own_blob(h) for h in only_v1)
    # with the version not kept loaded (its parsed copy stands in for the saved file), the same
    load(cache, v1)
    again = cache.gc(keep=[v3], window_days=0)
    def what(report):
        return [(r["name"], r["kept"], r["blobs"], r["bytes"]) for r in report.manifests]

    assert set(again.deleted_blobs) == only_v1 and what(again) == what(dry)


def test_fast_verify_parses_a_saved_manifest_again_only_when_it_changed(filled):
    cache = filled
    saved = cache.cache_dir / "manifests" / cache.manifest.name
    assert cache.verify().manifests_checked == 1  # parsed, and recorded as parsed
    record = cache.store.stamps_dir / "manifests-parsed.json"
    assert cache.manifest.name in record.read_text()
    good = saved.read_bytes()
    st = os.stat(saved)
    # emptied in place (size changes): parsed again, found damaged
    with open(saved, "r+b") as fh:
        fh.truncate(0)
    report = cache.verify()
    assert [d["name"] for d in report.damaged_manifests] == [cache.manifest.name]
    # rewritten in place to the same size, mtime restored: the fast mode trusts it (as it trusts
    # a blob's stamp); the full mode parses every manifest and finds it
    with open(saved, "r+b") as fh:
        fh.write(good)
    assert cache.verify().ok  # parsed (it changed), fine, recorded again
    os.utime(saved, ns=(st.st_atime_ns, os.stat(saved).st_mtime_ns))
    st = os.stat(saved)
    with open(saved, "r+b") as fh:
        fh.write(good[:1] + b"X" + good[2:])
    os.utime(saved, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.verify().damaged_manifests == []
    full = cache.verify(mode="full")
    assert [d["name"] for d in full.damaged_manifests] == [cache.manifest.name]
