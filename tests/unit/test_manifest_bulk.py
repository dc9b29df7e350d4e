"""Manifest validation over all entries at once gives exactly the per-entry answer.

Large manifests are validated with a few scans over all their URLs, paths, hashes and version
ids joined together (see ``releasecache.manifest.urls.parse_plain_s3_urls`` and
``releasecache.manifest.paths.all_plainly_safe``). These tests hold them to the per-entry
functions: whatever the bulk check accepts, the per-entry check accepts with the same result;
whatever either refuses, the manifest is refused; and the garbage collector is left as it was.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from releasecache import Manifest
from releasecache.errors import ManifestError, UnsafePathError
from releasecache.manifest import check_relative_path, parse_s3_url
from releasecache.manifest.paths import all_plainly_safe
from releasecache.manifest.urls import parse_plain_s3_urls

SETTINGS = dict(derandomize=True, database=None, deadline=None, max_examples=400,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
HOSTS = ["https://bk.s3.amazonaws.com/", "https://bk.s3.us-west-2.amazonaws.com/", "HTTPS://bk.s3.amazonaws.com/",
         "http://other_bucket.s3-us-west-2.amazonaws.com/", "https://s3.us-west-2.amazonaws.com/bk/",
         "s3://bk/", "https://bk.s3.amazonaws.com//", "http://127.0.0.1:9000/bk/", "https://x..y.s3.amazonaws.com/",
         "https://amazonaws.com/"]
# Characters every rule cares about, plus plain ones.
PIECES = ["p", "proj", "a", "file.nwb", "/", "//", ".", "..", "...", "%2e", "%41", "?", "#", ";", "@", ":",
          "C:", "\\", "\x00", "\x1f", "\x7f", "\n", "\ud800", "é", " ", "~", "x" * 64, "y" * 63, "z" * 200]

segment_text = st.lists(st.sampled_from(PIECES), min_size=0, max_size=6).map("".join)
paths = st.one_of(st.builds(lambda a, b, c: f"{a}/{b}/{c}", segment_text, segment_text, segment_text),
                  segment_text, st.just("proj/sessions/0001/file_000001.dat"))
urls = st.builds(lambda host, path: host + path, st.sampled_from(HOSTS), paths)


def _one_by_one(url: str) -> tuple[str, str, str] | None:
    """The per-entry answer: (bucket, key, key below its prefix), or None if refused."""
    try:
        bucket, key = parse_s3_url(url)
    except UnsafePathError:
        return None
    head, _, rest = key.partition("/")
    return (bucket, key, rest) if rest else None


def _plain(n: int, host: str = "https://bk.s3.us-west-2.amazonaws.com/") -> list[str]:
    return [f"{host}proj/sessions/{i // 100:04d}/file_{i:06d}.dat" for i in range(n)]


@settings(**SETTINGS)
@given(st.lists(urls, min_size=1, max_size=8), st.integers(0, 3))
def test_bulk_urls_agree_with_one_by_one(extra: list[str], plain: int) -> None:
    batch = _plain(plain) + extra
    bulk = parse_plain_s3_urls(batch)
    singles = [_one_by_one(u) for u in batch]
    if bulk is not None:  # accepted in bulk: accepted one by one, with the same answer
        assert bulk == singles


@settings(**SETTINGS)
@given(st.lists(paths, min_size=1, max_size=8))
def test_bulk_paths_agree_with_one_by_one(batch: list[str]) -> None:
    def safe(path: str) -> bool:
        try:
            check_relative_path(path, what="p")
            return True
        except UnsafePathError:
            return False

    if all_plainly_safe(batch):
        assert all(safe(p) for p in batch)
    elif all(safe(p) for p in batch):  # refused in bulk though each is safe: only for unusual ones
        assert any(len(p) >= 64 for p in batch), batch


def test_bulk_accepts_the_plain_shape() -> None:
    batch = _plain(5000)
    assert parse_plain_s3_urls(batch) == [_one_by_one(u) for u in batch]
    mixed = _plain(3) + _plain(3, "https://ck.s3.amazonaws.com/") + ["https://bk.s3.amazonaws.com/other/x.csv"]
    assert parse_plain_s3_urls(mixed) == [_one_by_one(u) for u in mixed]
    assert all_plainly_safe([u.split(".com/", 1)[1] for u in batch])


def _doc(n: int) -> dict:
    data = {}
    for i, url in enumerate(_plain(n)):
        digest = hashlib.blake2b(str(i).encode()).hexdigest()
        data[str(i)] = {"url": url, "version_id": "v" + digest[:31], "file_hash": digest}
    meta = hashlib.blake2b(b"meta").hexdigest()
    return {"project_name": "proj", "manifest_version": "1.0.0", "metadata_file_id_column_name": "file_id",
            "data_pipeline": [{"name": "AllenSDK", "version": "2.16.2"}],
            "metadata_files": {"units": {"url": "https://bk.s3.amazonaws.com/proj/project_metadata/units.csv",
                                         "version_id": "", "file_hash": meta, "size": 12}},
            "data_files": data}


BAD_VALUES = {
    "url": ["https://bk.s3.amazonaws.com/proj/../x", "https://bk.s3.amazonaws.com/proj/a//b", "https://bk.s3.amazonaws.com/x",
            "https://bk.s3.amazonaws.com/proj/a\nb", "https://bk.s3.amazonaws.com/proj/a\\b", "ftp://b/proj/x",
            "https://bk.s3.amazonaws.com/proj/%2e%2e/x", "https://bk.s3.amazonaws.com/proj/\ud800",
            "https://bk.s3.amazonaws.com/C:/x", "https://bk.s3.amazonaws.com/proj/.", 7, None,
            "https://bk.s3.amazonaws.com/proj/" + "x" * 300, "https://amazonaws.com/proj/x",
            "https://bk.s3.amazonaws.com/proj/\x7f"],
    "file_hash": ["A" * 128, "a" * 127, "a" * 129, "g" * 128, "é" * 128, 5, "a" * 127 + "\n"],
    "version_id": ["has space", "x" * 1025, "é", "a\nb", 3, None],
    "size": [-1, True, 1 << 53, 1.5, "12"],
}


@pytest.mark.parametrize("field,value", [(f, v) for f, vs in BAD_VALUES.items() for v in vs])
@pytest.mark.parametrize("where", [0, 2047, 2048, 4999])
def test_one_bad_entry_among_thousands_refuses_the_manifest(field: str, value: object, where: int) -> None:
    doc = _doc(5000)
    doc["data_files"][str(where)][field] = value
    with pytest.raises(ManifestError):
        Manifest.from_dict(doc)
    with pytest.raises(ManifestError):
        Manifest.from_bytes(json.dumps(doc).encode())


@pytest.mark.parametrize("damage", ["duplicate path", "bad name", "not an object", "missing key", "dup across"])
def test_structural_damage_among_thousands_refuses_the_manifest(damage: str) -> None:
    doc = _doc(5000)
    entries = doc["data_files"]
    if damage == "duplicate path":
        entries["4000"]["url"] = entries["17"]["url"]
    elif damage == "bad name":
        entries["../x"] = entries.pop("3000")
    elif damage == "not an object":
        entries["3000"] = [entries["3000"]["url"]]
    elif damage == "missing key":
        del entries["3000"]["version_id"]
    else:
        entries["3000"]["url"] = doc["metadata_files"]["units"]["url"]
    with pytest.raises(ManifestError, match=r"both map to|key must be|must be an object|missing"):
        Manifest.from_dict(doc)


def test_bulk_entries_equal_entry_by_entry() -> None:
    doc = _doc(5000)
    m = Manifest.from_dict(copy.deepcopy(doc))
    # a single unusual but valid entry (a percent-escape) sends the whole section entry by entry
    odd = copy.deepcopy(doc)
    odd["data_files"]["1"]["url"] = odd["data_files"]["1"]["url"].replace("file_", "file%5F")
    slow = Manifest.from_dict(odd)
    assert slow.data_files["1"].key.endswith("file_000001.dat")
    for name, entry in m.data_files.items():
        other = slow.data_files[name]
        assert entry == other and entry.__dict__ == other.__dict__ or name == "1"
        assert entry.location == other.location
    units = m.metadata_files["units"]
    assert (units.bucket, units.key, units.relative_path, units.size) == \
        ("bk", "proj/project_metadata/units.csv", "project_metadata/units.csv", 12)
    assert hash(units) == hash(slow.metadata_files["units"])
    with pytest.raises(AttributeError):
        units.size = 3  # type: ignore[misc]  # still frozen


def test_parsing_leaves_the_garbage_collector_as_it_was() -> None:
    data = json.dumps(_doc(3000)).encode()
    assert gc.isenabled()
    Manifest.from_bytes(data)
    assert gc.isenabled()
    with pytest.raises(ManifestError):
        Manifest.from_bytes(data.replace(b'"1.0.0"', b'"one"'))
    assert gc.isenabled()
    gc.disable()
    try:
        Manifest.from_bytes(data)
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
    errors: list[BaseException] = []

    def parse() -> None:
        try:
            for _ in range(5):
                Manifest.from_bytes(data)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=parse) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and gc.isenabled()


def test_bulk_regexes_are_anchored_per_value() -> None:
    # a value holding "\n" must not pass by splitting into two good-looking lines
    doc = _doc(10)
    h = doc["data_files"]["3"]["file_hash"]
    doc["data_files"]["3"]["file_hash"] = h[:64] + "\n" + h[65:]
    with pytest.raises(ManifestError, match="file_hash"):
        Manifest.from_dict(doc)
    doc = _doc(10)
    doc["data_files"]["3\n4"] = doc["data_files"].pop("3")
    with pytest.raises(ManifestError, match="key must be"):
        Manifest.from_dict(doc)
    assert re.fullmatch(r"[0-9a-f]{128}", doc["data_files"]["4"]["file_hash"])


def _reference_diff(old: dict[str, str], new: dict[str, str]) -> list[tuple]:
    """What compare_manifests reports for the data section, computed the plain way ({path: hash})."""
    out = [("changed", p, None) for p in sorted(old.keys() & new.keys()) if old[p] != new[p]]
    gone = sorted(old.keys() - new.keys())
    fresh = sorted(new.keys() - old.keys())
    for p in gone:
        match = next((q for q in fresh if new[q] == old[p]), None)
        if match is not None:
            fresh.remove(match)
            out.append(("renamed", p, match))
        else:
            out.append(("deleted", p, None))
    out += [("created", p, None) for p in fresh]
    order = {"changed": 0, "created": 1, "deleted": 2, "renamed": 3}
    return sorted(out, key=lambda c: (c[1], order[c[0]]))


def _manifest_of(files: list[tuple[str, str]], version: str) -> Manifest:
    doc = _doc(0)
    doc["manifest_version"] = version
    doc["data_files"] = {str(i): {"url": f"https://bk.s3.amazonaws.com/proj/{path}", "version_id": "",
                                  "file_hash": hashlib.blake2b(content.encode()).hexdigest()}
                         for i, (path, content) in enumerate(files)}
    return Manifest.from_dict(doc)


@settings(**{**SETTINGS, "max_examples": 300})
@given(st.integers(0, 60), st.data())
def test_compare_in_any_order_equals_the_plain_diff(n: int, data: st.DataObject) -> None:
    from releasecache import compare_manifests

    old = [(f"d/f{i:03d}", f"c{i}") for i in range(n)]
    new = list(old)
    for _ in range(data.draw(st.integers(0, 8))):
        op = data.draw(st.sampled_from(["change", "delete", "create", "rename", "swap", "move"]))
        if op == "create":
            new.insert(data.draw(st.integers(0, len(new))), (f"d/new{len(new)}{op}", data.draw(st.sampled_from(
                ["c1", "c2", "fresh", "c3"]))))
        elif new:
            i = data.draw(st.integers(0, len(new) - 1))
            path, content = new[i]
            if op == "change":
                new[i] = (path, content + "x")
            elif op == "delete":
                del new[i]
            elif op == "rename":
                new[i] = (path + "_moved", content)
            elif op == "swap":
                j = data.draw(st.integers(0, len(new) - 1))
                new[i], new[j] = new[j], new[i]
            else:
                new.append(new.pop(i))
    if len({p for p, _ in new}) != len(new):
        return  # two files at one path: not a valid manifest
    a, b = _manifest_of(old, "1.0.0"), _manifest_of(new, "1.1.0")
    diff = compare_manifests(a, b)
    old_map = {e.relative_path: e.file_hash for e in a.data_files.values()}
    new_map = {e.relative_path: e.file_hash for e in b.data_files.values()}
    got = [(c.kind, c.path, c.new_path) for c in diff.changes if c.section == "data"]
    assert got == _reference_diff(old_map, new_map)
