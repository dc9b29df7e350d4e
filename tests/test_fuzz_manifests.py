"""Inputs nobody thought of: manifests, metadata CSVs and NWB files mutated by hypothesis.

Valid documents (the VBN fixture manifests in ``manifests_fixtures/vbn/`` and the
toy release's, in every URL style) are mutated: wrong types at every key, missing
and duplicate keys, unicode and control characters, ``..``/``%2e%2e``/backslashes/
absolute paths/NUL in keys and URLs, very long strings, huge and negative numbers,
deep nesting, non-object JSON, BOMs, invalid UTF-8, non-semver versions, hashes of
the wrong length or case. Each one goes through every public way a manifest
enters -- ``Manifest.from_bytes``, a local file, ``compare_manifests`` on files (the
bulk), and, on a sample, a mirror, the S3 API and plain HTTP (an in-process S3
server), and the command line. Each is either accepted with every local path
inside the cache, or refused with an error from the package's hierarchy; never
another exception, never a write outside the cache.

Runs are reproducible (``derandomize``, no example database). ``RELEASECACHE_FUZZ_EXAMPLES``
sets the number of bulk manifests (default 5,000); the samples scale with it.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from releasecache import CloudCache, Manifest, compare_manifests
from releasecache.errors import ReleaseCacheError
from releasecache.cache.publish import build_manifest
from tests._reliability import snapshot
from tests.support.hostile_server import HostileServer

REPO = Path(__file__).resolve().parent.parent
BULK = int(os.environ.get("RELEASECACHE_FUZZ_EXAMPLES", "5000"))
SAMPLE = max(40, BULK // 50)  # the expensive entry points (servers, the CLI) see a sample
COUNTS: dict[str, int] = {}
FUZZ = dict(derandomize=True, database=None, deadline=None, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def _count(what: str) -> None:
    COUNTS[what] = COUNTS.get(what, 0) + 1


# -- seeds ------------------------------------------------------------------------------


def _toy_seeds() -> list[dict[str, Any]]:
    from tests.support.fixtures.toy import PROJECT, build_toy_release

    seeds = []
    with tempfile.TemporaryDirectory() as tmp:
        release = build_toy_release(Path(tmp), large_size=2_000)
        for (version, source), style in zip(release.items(), ("virtual", "path", "s3")):
            seeds.append(build_manifest(PROJECT, version, source, bucket="toy-bucket", url_style=style,
                                        version_id_for=lambda key, path, digest: digest[:32],
                                        record_size=style == "path"))
    return seeds


VBN_SEEDS = [json.loads(p.read_bytes()) for p in sorted((REPO / "manifests_fixtures" / "vbn").glob("*.json"))]
SEEDS = VBN_SEEDS + _toy_seeds()


def test_seeds_are_valid():
    assert len(SEEDS) >= 6
    for doc in SEEDS:
        Manifest.from_dict(doc, name=f"{doc['project_name']}_project_manifest_v{doc['manifest_version']}.json")


# -- mutations --------------------------------------------------------------------------

NASTY_STRINGS = [
    "", ".", "..", "../", "../../etc/passwd", "%2e%2e/", "%2e%2e%2f%2e%2e%2fetc", "..%2f..%2f", "%2E%2E/", "..\\..\\x",
    "\\", "C:\\Windows", "C:/x", "/", "/etc/passwd", "//server/share", "a/../../b", "a/./b", "a//b", "a\x00b",
    "%00", "\x00", "\n", "\r\n", "\t", "\x1b[31m", "\x7f", "\u202e", "\ufeff", "\u0000", "ü", "😀", "\ud800",
    "CON", "nul", "a" * 256, "a/" * 600, "x" * 100_000, "s3://", "s3:///key", "file:///etc/passwd",
    "ftp://host/b/k", "http://", "https://b.s3.amazonaws.com/", "https://b.s3.amazonaws.com/%2e%2e/x",
    "http://127.0.0.1:1/b/p/../../x", "javascript:alert(1)", "1.0", "v1.0.0", "1.0.0.0", "01.0.0", "1.0.0-",
    "latest", "0.1.0/../../x", "1.0.0+../../x", "NaN", "null", "true", "0" * 128, "F" * 128, "g" * 128,
]
TRAVERSALS = ["../", "%2e%2e/", "..%2f", "/", "\\", "..\\", "%5c", "\x00", "%00", "\n", "//", "./", "C:"]


def _deep(n: int) -> str:
    return "[" * n + "]" * n


class Raw:
    """A piece of JSON text put in as is (deep nesting, duplicate keys, numbers json cannot write)."""

    def __init__(self, text: str) -> None:
        self.text = text


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.sampled_from([-1, 0, 2 ** 53, 2 ** 63, 2 ** 64 + 1, 10 ** 400, -(10 ** 400)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(NASTY_STRINGS),
    st.text(max_size=30), st.text(alphabet=st.characters(max_codepoint=0x20), max_size=6),
    st.integers(0, 3_000).map(lambda n: "é" * n),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    st.integers(1, 100_000).map(lambda n: Raw(_deep(n))),
    st.sampled_from([Raw("1e999"), Raw("-1e999"), Raw("NaN"), Raw("Infinity"), Raw("1" * 5000), Raw("0x10"),
                     Raw("01"), Raw('"\\ud800"'), Raw('"\\u0000"')]),
)
OPS = ("replace", "delete", "duplicate", "rename", "string", "top_key", "entry_field", "swap_type", "bytes")
mutation = st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 30), values,
                     st.sampled_from(NASTY_STRINGS + TRAVERSALS), st.integers(0, 1 << 30))
BYTE_OPS = ("bom", "utf16", "bad_utf8", "truncate", "junk_tail", "not_object", "empty", "none")


def _nodes(doc: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _nodes(v, path + (i,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _mutate_string(text: str, nasty: str, where: int) -> str:
    choice = where % 9
    if choice == 0:
        return nasty + text
    if choice == 1:
        cut = where % (len(text) + 1)
        return text[:cut] + nasty + text[cut:]
    if choice == 2:
        return text.upper()
    if choice == 3:
        return text[:-1]
    if choice == 4:
        return text + "0"
    if choice == 5:
        return text.replace("/", "/" + nasty, 1)
    if choice == 6:
        return text * (2 + where % 40)
    if choice == 7:
        return text.replace("project_metadata", "%2e%2e").replace("https", nasty or "x")
    return nasty


class _Placeholders:
    def __init__(self) -> None:
        self.raw: dict[str, str] = {}

    def add(self, text: str) -> str:
        key = f"__RAW_{len(self.raw)}__"
        self.raw[key] = text
        return key


def _apply(doc: Any, op: tuple, holes: _Placeholders) -> Any:
    kind, where, value, nasty, extra = op
    if isinstance(value, Raw):
        value = holes.add(value.text)
    nodes = _nodes(doc)
    if kind == "top_key" and isinstance(doc, dict) and doc:
        keys = list(doc)
        path = (keys[where % len(keys)],)
        kind = ("replace", "delete", "string", "swap_type")[extra % 4]
    elif kind == "entry_field" and isinstance(doc, dict):
        entries = [(s, k) for s in ("metadata_files", "data_files") if isinstance(doc.get(s), dict)
                   for k in doc[s] if isinstance(doc[s][k], dict)]
        if entries:
            section, name = entries[where % len(entries)]
            fields = list(doc[section][name]) + ["size", "url", "file_hash", "version_id"]
            path = (section, name, fields[extra % len(fields)])
            if path[-1] not in doc[section][name]:
                doc[section][name][path[-1]] = "x"
            kind = ("replace", "delete", "string", "string", "swap_type")[extra % 5]
        else:
            path = nodes[where % len(nodes)]
    else:
        path = nodes[where % len(nodes)]
    if not path:  # the document itself
        if kind in ("replace", "swap_type"):
            return value
        return doc
    parent = _get(doc, path[:-1])
    key = path[-1]
    current = parent[key]
    if kind == "replace":
        parent[key] = value
    elif kind == "delete":
        del parent[key]
    elif kind == "duplicate" and isinstance(parent, dict):
        parent[holes.add(json.dumps(key))] = copy.deepcopy(current) if extra % 2 else value
    elif kind == "rename" and isinstance(parent, dict):
        parent[nasty if isinstance(nasty, str) else str(nasty)] = parent.pop(key)
    elif kind == "string" and isinstance(current, str):
        parent[key] = _mutate_string(current, nasty, extra)
    elif kind == "swap_type":
        parent[key] = ([current], {"v": current}, str(current), len(str(current)), None, True)[extra % 6]
    elif kind == "bytes":
        parent[key] = value
    return doc


def _serialize(doc: Any, holes: _Placeholders, byte_op: str, where: int) -> bytes:
    text = json.dumps(doc, ensure_ascii=bool(where % 2))
    for key, raw in holes.raw.items():
        text = text.replace(json.dumps(key), raw)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: as json writes it, escaped
        data = text.encode("utf-8", "surrogatepass")
    if byte_op == "bom":
        return b"\xef\xbb\xbf" + data
    if byte_op == "utf16":
        return text.encode("utf-16", "surrogatepass")
    if byte_op == "bad_utf8":
        cut = where % (len(data) + 1)
        return data[:cut] + (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80")[where % 4] + data[cut:]
    if byte_op == "truncate":
        return data[: where % (len(data) + 1)]
    if byte_op == "junk_tail":
        return data + (b"}", b"\x00", b" garbage", b"{}")[where % 4]
    if byte_op == "not_object":
        return (b"[]", b"\"manifest\"", b"1", b"null", b"true", b"[" + data + b"]")[where % 6]
    if byte_op == "empty":
        return b""
    return data


@st.composite
def hostile_manifests(draw: Any) -> tuple[bytes, dict[str, Any]]:
    seed = copy.deepcopy(SEEDS[draw(st.integers(0, len(SEEDS) - 1))])
    holes = _Placeholders()
    doc: Any = seed
    for op in draw(st.lists(mutation, min_size=1, max_size=4)):
        doc = _apply(doc, op, holes)
    byte_op = draw(st.sampled_from(BYTE_OPS + ("none",) * 8))  # most documents stay well-formed JSON
    return _serialize(doc, holes, byte_op, draw(st.integers(0, 1 << 30))), seed


# -- what must hold ---------------------------------------------------------------------------


def _inside(root: Path, path: Path) -> bool:
    real = os.path.realpath(path)
    return real.startswith(str(root.resolve()) + os.sep)


def _printable(text: str) -> bool:
    """No control characters, and valid Unicode (a name that is safe to show and to put on disk)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(ord(c) < 32 or c == "\x7f" for c in text)


def _check_accepted(manifest: Manifest, root: Path) -> None:
    """Every local path an accepted manifest leads to lies inside the cache directory."""
    from releasecache.manifest import relpath_within

    assert _inside(root, relpath_within(root, manifest.view_dir_name))
    assert _printable(manifest.view_dir_name)
    for entry in manifest.entries():
        assert re.fullmatch(r"[0-9a-f]{128}", entry.file_hash), entry
        assert all(_printable(t) for t in (entry.name, entry.relative_path, entry.version_id, entry.key)), entry
        assert _inside(root, relpath_within(root, f"{manifest.view_dir_name}/{entry.relative_path}")), entry
        assert _inside(root, root / "blobs" / "blake2b" / entry.file_hash[:2] / entry.file_hash), entry


def _refused_properly(exc: BaseException) -> None:
    """A refusal must be an error of the package's hierarchy, with a readable message."""
    if not isinstance(exc, ReleaseCacheError):
        raise AssertionError(f"not an error of the hierarchy: {type(exc).__name__}: {str(exc)[:500]}") from exc
    assert len(str(exc)) < 5000  # readable, whatever the input


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A directory tree that must come out of the fuzzing unchanged (only the caches inside may change)."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "outside" / "nested").mkdir(parents=True)
    (root / "outside" / "passwd").write_text("root:x:0:0\n")
    (root / "outside" / "nested" / "victim.dat").write_bytes(b"precious" * 100)
    return root


def _outside_snapshot(root: Path) -> dict:
    return snapshot(root / "outside")


# -- the bulk: bytes, files, compare_manifests -------------------------------------------------


def _fast_dir(fallback: Path) -> Path:
    """A directory on tmpfs when the machine has one: the bulk tests the file entry point, not the disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="rc-fuzz-", dir=shm))
    fallback.mkdir()
    return fallback


def test_bulk_manifests_are_accepted_safely_or_refused(sandbox):
    workdir = _fast_dir(sandbox / "bulk")
    cache_root = sandbox / "cache-bulk"
    cache_root.mkdir()
    before = _outside_snapshot(sandbox)
    seed_manifests = [Manifest.from_dict(doc, name=f"seed_{i}_v1.0.0.json") for i, doc in enumerate(SEEDS)]

    @settings(max_examples=BULK, **FUZZ)
    @given(hostile_manifests(), st.integers(0, len(SEEDS) - 1))
    def check(case: tuple[bytes, dict], other: int) -> None:
        data, _seed = case
        _count("manifests")
        # 1. bytes
        try:
            manifest = Manifest.from_bytes(data, name="fuzzed_v1.0.0.json")
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may come out
            _refused_properly(exc)
            manifest = None
        if manifest is not None:
            _count("accepted")
            _check_accepted(manifest, cache_root)
        # 2. a local file, read by 3. compare_manifests (as the old or the new manifest)
        path = workdir / "fuzzed_v1.0.0.json"
        path.write_bytes(data)
        seed = seed_manifests[other]
        for a, b in [(path, seed) if other % 2 else (seed, path)]:
            try:
                diff = compare_manifests(a, b)
            except Exception as exc:  # noqa: BLE001
                _refused_properly(exc)
                assert manifest is None, f"accepted from bytes but refused from a file: {exc!r}"
                continue
            assert manifest is not None
            str(diff), diff.to_markdown(), diff.to_json()

    try:
        check()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert COUNTS["manifests"] >= BULK
    assert not any(cache_root.iterdir())
    assert _outside_snapshot(sandbox) == before


# -- a sample through the cache: mirror, S3 API, plain HTTP ------------------------------------


@pytest.fixture(scope="module")
def s3(sandbox):
    with HostileServer(bucket="fuzz-bucket") as server:
        yield server


def _load_through(cache: CloudCache, name: str) -> Manifest | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cache.load_manifest(name)
        except Exception as exc:  # noqa: BLE001
            _refused_properly(exc)
            return None


def _cache_tree_ok(root: Path, accepted: bool) -> None:
    files = [p for p in root.rglob("*")]
    for p in files:
        assert _inside(root, p) or p.is_symlink() and _inside(root, p.parent)
    if not accepted:  # a refused manifest is not saved, and nothing else either
        assert [p for p in files if p.is_file() and "manifests" in p.parts] == []


def test_sample_through_mirror_s3_and_http(sandbox, s3):
    from releasecache.remote import HttpRemote, LocalRemote, S3Remote

    before = _outside_snapshot(sandbox)
    mirror = sandbox / "mirror"
    project = "fuzzproj"
    n = {"i": 0}
    remotes = {"mirror": LocalRemote(mirror), "s3": S3Remote(s3.bucket, endpoint_url=s3.url, request_timeout=10),
               "http": HttpRemote(s3.bucket_url, request_timeout=10)}

    @settings(max_examples=SAMPLE, **FUZZ)
    @given(hostile_manifests())
    def check(case: tuple[bytes, dict]) -> None:
        data, _seed = case
        n["i"] += 1
        name = f"{project}_project_manifest_v1.0.{n['i']}.json"
        (mirror / project / "manifests").mkdir(parents=True, exist_ok=True)
        (mirror / project / "manifests" / name).write_bytes(data)
        s3.put(f"{project}/manifests/{name}", data)
        for via in ("mirror", "s3", "http"):
            _count(f"via {via}")
            root = sandbox / f"cache-{via}-{n['i']}"
            cache = CloudCache(root, remotes[via], project, progress=False)  # as from_mirror/_s3/_http build it
            manifest = _load_through(cache, name)
            if manifest is not None:
                _check_accepted(manifest, root)
                for entry in manifest.metadata_files.values():  # where the cache would put each file: inside
                    assert _inside(root, cache.metadata_path(entry.name)["local_path"])
                for entry in manifest.data_files.values():
                    assert _inside(root, cache.data_path(entry.name)["local_path"])
            _cache_tree_ok(root, manifest is not None)

    check()
    assert COUNTS["via s3"] >= SAMPLE
    assert _outside_snapshot(sandbox) == before


# -- a sample through the command line ----------------------------------------------------------


def test_sample_through_the_command_line(sandbox):
    from releasecache.cli import cli
    from releasecache.cli.app import EXIT_INTERNAL

    before = _outside_snapshot(sandbox)
    work = sandbox / "cli"
    work.mkdir()
    seed_file = work / "seed.json"
    seed_file.write_text(json.dumps(SEEDS[0]))
    mirror = work / "mirror"
    project = SEEDS[0]["project_name"]
    (mirror / project / "manifests").mkdir(parents=True)
    runner = CliRunner()
    n = {"i": 0}

    @settings(max_examples=SAMPLE, **FUZZ)
    @given(hostile_manifests())
    def check(case: tuple[bytes, dict]) -> None:
        data, _seed = case
        n["i"] += 1
        _count("via cli")
        fuzzed = work / "fuzzed.json"
        fuzzed.write_bytes(data)
        name = f"{project}_project_manifest_v9.0.{n['i']}.json"
        (mirror / project / "manifests" / name).write_bytes(data)
        cache_dir = work / f"cache-{n['i']}"
        runs = [
            ["diff", str(seed_file), str(fuzzed)],
            ["diff", "--json", str(fuzzed), str(seed_file)],
            ["--cache-dir", str(cache_dir), "--mirror", str(mirror), "--project", project, "download",
             "--version", name, "--dry-run", "--json"],
        ]
        for args in runs:
            result = runner.invoke(cli, args, catch_exceptions=True)
            assert result.exit_code != EXIT_INTERNAL, (args, result.output[-2000:])
            assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
            assert "Traceback" not in result.output
        if cache_dir.exists():
            _cache_tree_ok(cache_dir, accepted=True)
        (mirror / project / "manifests" / name).unlink()

    showwarning = warnings.showwarning
    try:
        check()
    finally:  # the command line sets up logging and warnings for a terminal: undo that
        warnings.showwarning = showwarning
        logger = logging.getLogger("releasecache")
        for handler in [h for h in logger.handlers if getattr(h, "_releasecache_cli", False)]:
            logger.removeHandler(handler)
    assert COUNTS["via cli"] >= SAMPLE
    assert _outside_snapshot(sandbox) == before


# -- metadata CSVs that are not what they claim ---------------------------------------------------


def _csv_seeds() -> dict[str, bytes]:
    from tests.support.fixtures._vbn_tables import metadata_tables

    out = {}
    for name, frame in metadata_tables(0).items():
        buf = io.StringIO()
        frame.head(30).to_csv(buf, index=False, lineterminator="\n")
        out[name] = buf.getvalue().encode()
    return out


CSV_SEEDS = _csv_seeds()
TABLES = sorted(set(CSV_SEEDS) & {"ecephys_sessions", "behavior_sessions", "probes", "channels", "units"})
CSV_JUNK = [b"", b"\n", b"\x00" * 100, b"\xff\xfe\xfd", b'"unclosed,quote\n1,2', b"a;b;c\n1;2;3\n",
            b"\xef\xbb\xbf", b",,,,\n,,,,\n", b"id\n" + b"9" * 5000 + b"\n", b"\x89HDF\r\n\x1a\n" + bytes(200)]


@st.composite
def junk_csvs(draw: Any) -> tuple[str, bytes]:
    table = draw(st.sampled_from(TABLES))
    source = CSV_SEEDS[draw(st.sampled_from(sorted(CSV_SEEDS)))]  # sometimes another table's CSV
    kind = draw(st.sampled_from(("truncate", "drop_column", "rename_header", "binary", "junk", "insert",
                                 "wrong_table", "bad_values")))
    where = draw(st.integers(0, 1 << 30))
    if kind == "truncate":
        return table, source[: where % (len(source) + 1)]
    if kind == "drop_column":
        lines = source.decode().split("\n")
        cols = lines[0].split(",")
        drop = where % len(cols)
        return table, "\n".join(",".join(c for j, c in enumerate(line.split(",")) if j != drop)
                                for line in lines).encode()
    if kind == "rename_header":
        header, _, rest = source.partition(b"\n")
        return table, header.replace(b"_id", draw(st.sampled_from([b"_ID", b"", b"\x00", b" id"])), 1) + b"\n" + rest
    if kind == "binary":
        return table, draw(st.binary(max_size=2000))
    if kind == "junk":
        return table, draw(st.sampled_from(CSV_JUNK))
    if kind == "insert":
        cut = where % (len(source) + 1)
        return table, source[:cut] + draw(st.binary(min_size=1, max_size=50)) + source[cut:]
    if kind == "wrong_table":
        return table, CSV_SEEDS[TABLES[where % len(TABLES)]]
    header, _, rest = source.partition(b"\n")  # bad_values: text where numbers are expected
    return table, header + b"\n" + rest.replace(b"1", draw(st.sampled_from([b"x", b"1.5", b"-", b"nan", b"1e999"])))


def test_junk_csvs_give_a_table_or_a_metadata_table_error(sandbox):
    from releasecache.vbn.tables import INDEX_COLUMNS, load_table

    work = sandbox / "csv"
    work.mkdir()
    sidecars = work / "sidecars"

    @settings(max_examples=max(300, BULK // 10), **FUZZ)
    @given(junk_csvs(), st.booleans())
    def check(case: tuple[str, bytes], with_sidecar: bool) -> None:
        table, data = case
        _count("csvs")
        path = work / f"{table}.csv"
        path.write_bytes(data)
        try:
            frame = load_table(table, path, sidecar_dir=sidecars if with_sidecar else None)
        except Exception as exc:  # noqa: BLE001
            _refused_properly(exc)
            _count("csvs refused")
            return
        assert isinstance(frame, pd.DataFrame) and frame.index.name == INDEX_COLUMNS[table]

    check()
    assert COUNTS["csvs"] >= 300 and COUNTS.get("csvs refused", 0) > 0


# -- NWB files that are not NWB ---------------------------------------------------------------------


def _hdf5_without_nwb(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(10))
        f.attrs["neurodata_type"] = "NWBFile"  # claims to be one


def _nwb_without_session_groups(path: Path) -> None:
    import datetime

    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile(session_description="empty", identifier="not-a-session",
                  session_start_time=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    with NWBHDF5IO(str(path), "w") as io_:
        io_.write(nwb)


@pytest.fixture(scope="module")
def not_nwb_seeds(sandbox) -> dict[str, bytes]:
    work = sandbox / "nwb-seeds"
    work.mkdir()
    _hdf5_without_nwb(work / "plain.h5")
    _nwb_without_session_groups(work / "bare.nwb")
    return {"plain": (work / "plain.h5").read_bytes(), "bare": (work / "bare.nwb").read_bytes()}


#: Reads that a valid NWB file without the session's groups answers as the reference does (an empty
#: licks table; metadata from the general fields), so they are refused only for files that are not NWB.
LENIENT_ON_BARE_NWB = {"behavior.licks", "behavior.metadata"}
NWB_READS = {
    "behavior.metadata": lambda s: s.metadata,
    "behavior.trials": lambda s: s.trials,
    "behavior.stimulus_presentations": lambda s: s.stimulus_presentations,
    "behavior.licks": lambda s: s.licks,
    "ecephys.get_units": lambda s: s.get_units(),
    "ecephys.get_channels": lambda s: s.get_channels(),
    "ecephys.probes": lambda s: s.probes,
    "ecephys.metadata": lambda s: s.metadata,
}


def test_files_that_are_not_nwb_give_nwb_layout_error(sandbox, not_nwb_seeds):
    from releasecache.vbn.nwb import BehaviorSession, EcephysSession

    work = sandbox / "nwb"
    work.mkdir()

    @settings(max_examples=max(60, BULK // 80), **FUZZ)
    @given(st.sampled_from(("random", "truncated_plain", "truncated_bare", "plain", "bare", "empty",
                            "hdf5_magic", "flipped")),
           st.binary(max_size=4096), st.integers(0, 1 << 30), st.sampled_from(sorted(NWB_READS)),
           st.booleans())
    def check(kind: str, junk: bytes, where: int, read: str, as_stream: bool) -> None:
        _count("nwb files")
        if kind == "random":
            data = junk
        elif kind.startswith("truncated_"):
            seed = not_nwb_seeds[kind.split("_", 1)[1]]
            data = seed[: where % len(seed)]
        elif kind in ("plain", "bare"):
            data = not_nwb_seeds[kind]
        elif kind == "empty":
            data = b""
        elif kind == "hdf5_magic":
            data = b"\x89HDF\r\n\x1a\n" + junk
        else:
            seed = bytearray(not_nwb_seeds["bare"])
            for i in range(0, len(seed), 1 + where % 997):
                seed[i] ^= 0x5A
            data = bytes(seed)
        path = work / "session.nwb"
        path.write_bytes(data)
        cls = BehaviorSession if read.startswith("behavior") else EcephysSession
        source: Any = io.BytesIO(data) if as_stream else path
        try:
            session = cls(source)
            try:
                NWB_READS[read](session)
            finally:
                session.close()
        except Exception as exc:  # noqa: BLE001
            _refused_properly(exc)
            _count("nwb refused")
            return
        assert kind in ("bare", "flipped", "truncated_bare") and read in LENIENT_ON_BARE_NWB, \
            f"{kind} read as a session ({read})"

    check()
    assert COUNTS["nwb files"] >= 60


def test_print_counts(capsys):
    """What this run generated (shown in the test output)."""
    assert COUNTS.get("manifests", 0) >= BULK
    with capsys.disabled():
        print(f"\n[fuzz] {COUNTS.get('manifests', 0)} manifests through bytes, files and compare_manifests "
              f"({COUNTS.get('accepted', 0)} accepted); {COUNTS.get('via mirror', 0)} each through a mirror, "
              f"the S3 API and plain HTTP; {COUNTS.get('via cli', 0)} through the CLI; "
              f"{COUNTS.get('csvs', 0)} CSVs ({COUNTS.get('csvs refused', 0)} refused); "
              f"{COUNTS.get('nwb files', 0)} non-NWB files")


@pytest.mark.parametrize("kind, read", [("plain", r) for r in sorted(NWB_READS)]
                         + [("bare", r) for r in sorted(set(NWB_READS) - LENIENT_ON_BARE_NWB)])
def test_hdf5_without_nwb_session_groups_gives_nwb_layout_error(kind, read, not_nwb_seeds, tmp_path):
    """An HDF5 file that claims to be NWB, and a valid NWB file with none of a session's groups."""
    from releasecache.errors import NwbLayoutError
    from releasecache.vbn.nwb import BehaviorSession, EcephysSession

    path = tmp_path / "session.nwb"
    path.write_bytes(not_nwb_seeds[kind])
    session = (BehaviorSession if read.startswith("behavior") else EcephysSession)(path)
    with pytest.raises(NwbLayoutError):
        NWB_READS[read](session)
    session.close()
