"""What a new user meets in the first hour: Ctrl-C, a dead endpoint, a damaged cached
manifest, honest reports, progress with a total, and complete usage records.

Everything runs against the loopback S3 server, mostly through the fault proxy, with
real processes and real signals (SIGINT, SIGKILL).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from releasecache import CloudCache, OutdatedManifestWarning, TransferConfig
from releasecache import errors as E
from tests.support.fixtures.toy import PROJECT
from tests.support.proxy import Fault, default_match, wait_for
from tests.support.s3server import publish_fixture

from ._reliability import blake, bulk_bucket  # noqa: F401  (bulk_bucket is a fixture)
from .conftest import SMALL_PARTS

REPO_ROOT = Path(__file__).resolve().parent.parent
BIG = "sessions/100/probe_A.dat"  # 300,000 bytes: five parts of 64 KiB
STOPPED = re.compile(r"stopped; (\d+) partial downloads? kept — run again to resume")
#: The CLI and the library's default stop bound: "within 2 seconds" of SIGINT.
CTRL_C_BOUND = 2.0
#: "stops within about 10 seconds": generous, so a loaded machine does not fail it.
DEAD_BOUND = 20.0


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO_ROOT))


def _cli(cache_dir: Path, bucket: SimpleNamespace, endpoint: str, *rest: str) -> list[str]:
    return [sys.executable, "-m", "releasecache.cli", "--cache-dir", str(cache_dir), "--bucket", bucket.bucket,
            "--project", bucket.project, "--endpoint-url", endpoint, *rest]


def _load(cache: CloudCache, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        cache.load_manifest(name)


def _cache(cache_dir: Path, bucket: SimpleNamespace, endpoint: str, **config) -> CloudCache:
    return CloudCache.from_s3(cache_dir, bucket.bucket, bucket.project, endpoint_url=endpoint,
                              transfer_config=TransferConfig(**{**SMALL_PARTS, **config}), progress=False)


def _later_part(method: str, path: str, headers: dict) -> bool:
    """Object GETs of any part but the first: those are the ones left hanging."""
    return default_match(method, path, headers) and not headers.get("Range", "").startswith("bytes=0-")


def _on(path_part: str, range_start: int | None = None):
    def match(method, path, headers):
        if method != "GET" or path_part not in path:
            return False
        return range_start is None or headers.get("Range", "").startswith(f"bytes={range_start}-")
    return match


def _sidecars(cache_dir: Path) -> list[Path]:
    folder = cache_dir / ".partial"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _resumed_bytes(cache_dir: Path) -> int:
    """Bytes the resume sidecars record as already downloaded."""
    total = 0
    for sidecar in _sidecars(cache_dir):
        total += sum(b - a for a, b in json.loads(sidecar.read_text())["done"])
    return total


def _interrupt(proc: subprocess.Popen, timeout: float = 30.0) -> tuple[float, str, str]:
    """SIGINT ``proc``; return (seconds until it exited, stdout, stderr)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running {timeout} s after SIGINT; stderr: {err[-3000:]}")
    return time.monotonic() - started, out, err


def _no_half_written_views(cache: CloudCache) -> None:
    """Every view path that exists has exactly the manifest's bytes; every blob is its hash."""
    for entry in cache.manifest.entries():
        path = cache.store.view_path(cache.manifest.view_dir_name, entry.relative_path)
        if os.path.lexists(path):
            assert blake(path) == entry.file_hash, entry.relative_path
    for h, blob in cache.store.iter_blobs():
        assert blake(blob) == h


# -- a release whose files are larger than the command line's 8 MiB parts ---------------------

BIG_PROJECT = "big-release"
BIG_SIZES = {"0": 8 * 1024 * 1024 + 150_000, "1": 8 * 1024 * 1024 + 90_000}


@pytest.fixture(scope="module")
def big_bucket(s3_server, tmp_path_factory) -> SimpleNamespace:
    """One version with two data files of two 8 MiB parts each (the command line's part size)."""
    import random

    root = tmp_path_factory.mktemp("big") / "0.1.0"
    meta = root / BIG_PROJECT / "project_metadata"
    meta.mkdir(parents=True)
    (meta / "sessions.csv").write_text("id,file_id\n0,0\n1,1\n")
    ids = {}
    for file_id, size in BIG_SIZES.items():
        key = f"{BIG_PROJECT}/sessions/{file_id}/big_{file_id}.dat"
        (root / key).parent.mkdir(parents=True)
        (root / key).write_bytes(random.Random(int(file_id)).randbytes(size))
        ids[file_id] = key
    (root / "file_ids.json").write_text(json.dumps(ids))
    manifests = publish_fixture(s3_server, "big-bucket", BIG_PROJECT, {"0.1.0": root}, record_size=True)
    return SimpleNamespace(bucket="big-bucket", project=BIG_PROJECT, manifests=manifests,
                           names=[m.name for m in manifests], endpoint_url=s3_server.endpoint_url)


# -- 13. a damaged cached manifest is repaired ----------------------------------------------------


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "emptied":
        path.write_bytes(b"")
    else:  # edited by hand: a key renamed, still JSON
        edited = data.replace(b'"data_files"', b'"data_filez"', 1)
        assert edited != data
        path.write_bytes(edited)


@pytest.mark.parametrize("how", ["truncated", "emptied", "edited"])
def test_damaged_cached_manifest_is_fetched_again_when_online(how, tmp_path, toy_bucket, proxy, caplog):
    cache_dir = tmp_path / "cache"
    _load(_cache(cache_dir, toy_bucket, proxy.url), toy_bucket.names[0])
    saved = cache_dir / "manifests" / toy_bucket.names[0]
    good = saved.read_bytes()
    _damage(saved, how)
    proxy.clear()
    caplog.set_level(logging.WARNING, logger="releasecache")
    cache = _cache(cache_dir, toy_bucket, proxy.url)
    _load(cache, toy_bucket.names[0])
    assert cache.manifest.version == "0.1.0" and saved.read_bytes() == good
    key = f"/{toy_bucket.bucket}/{PROJECT}/manifests/{toy_bucket.names[0]}"
    assert proxy.stats.requests[("GET", key)] == 1
    assert any(str(saved) in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert sorted(p.name for p in saved.parent.iterdir()) == [toy_bucket.names[0]]  # no temporary left behind
    assert cache.download_data(1).stat().st_size == 300_000


def test_damaged_cached_manifest_offline_names_the_file_and_the_fix(tmp_path, toy_bucket):
    cache_dir = tmp_path / "cache"
    _load(_cache(cache_dir, toy_bucket, toy_bucket.endpoint_url), toy_bucket.names[0])
    saved = cache_dir / "manifests" / toy_bucket.names[0]
    _damage(saved, "truncated")
    offline = CloudCache.from_local_cache(cache_dir, PROJECT, progress=False)
    with pytest.raises(E.ManifestError) as info:
        _load(offline, toy_bucket.names[0])
    message = str(info.value)
    assert str(saved) in message and "from_s3" in message and "--offline" in message, message
    result = subprocess.run(_cli(cache_dir, toy_bucket, toy_bucket.endpoint_url, "--offline", "download",
                                 "--version", "0.1.0", "--json"), capture_output=True, text=True, env=_env(),
                            timeout=120)
    assert result.returncode == 3, result.stderr
    assert str(saved) in json.loads(result.stdout)["error"]["message"]
    assert saved.stat().st_size < 2000  # offline, nothing was changed


def test_verify_checks_manifests_and_repairs_them_online(tmp_path, toy_bucket, proxy):
    cache_dir = tmp_path / "cache"
    cache = _cache(cache_dir, toy_bucket, proxy.url)
    for name in toy_bucket.names[:2]:
        _load(cache, name)
    saved = cache_dir / "manifests" / toy_bucket.names[1]
    good = saved.read_bytes()
    _damage(saved, "emptied")
    # offline: reported (and exit 1 on the command line), left as it is
    offline = CloudCache.from_local_cache(cache_dir, PROJECT, progress=False)
    report = offline.verify()
    assert not report.ok and report.manifests_checked == 2
    assert [(d["name"], d["repaired"]) for d in report.damaged_manifests] == [(toy_bucket.names[1], False)]
    assert toy_bucket.names[1] in report.summary()
    result = subprocess.run(_cli(cache_dir, toy_bucket, proxy.url, "--offline", "verify", "--json"),
                            capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert [d["name"] for d in doc["damaged_manifests"]] == [toy_bucket.names[1]]
    assert saved.read_bytes() == b""
    # online: fetched again and replaced
    report = cache.verify()
    assert report.ok, report.summary()
    assert [(d["name"], d["repaired"]) for d in report.damaged_manifests] == [(toy_bucket.names[1], True)]
    assert saved.read_bytes() == good


# -- 18. records that list everything --------------------------------------------------------------


def test_prefetch_records_the_files_it_links_from_other_versions(make_cache, toy_bucket):
    first = make_cache()
    _load(first, toy_bucket.names[0])
    assert first.prefetch(progress=False).ok
    cache = make_cache()
    _load(cache, toy_bucket.names[1])
    report = cache.prefetch(progress=False)
    assert report.ok and report.reused and report.fetched
    used = {r["path"] for r in cache.used_files()}
    assert set(report.reused) <= used
    assert used == {e.relative_path for e in cache.manifest.entries()}
    assert {r["path"] for r in cache.write_record()["files"]} == used
