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
from tests.support.workers import download_one_script

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


def _settle(proxy, quiet: float = 1.0, timeout: float = 60.0) -> None:
    """Wait until no new request has reached the proxy for ``quiet`` seconds (all in flight are hanging)."""
    deadline = time.monotonic() + timeout
    seen, since = proxy.stats.gets(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = proxy.stats.gets()
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    pytest.fail("requests kept arriving at the proxy")


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


# -- 11. Ctrl-C ----------------------------------------------------------------------------


def test_ctrl_c_stops_a_cli_download_within_2_s_and_keeps_partials_for_resume(tmp_path, big_bucket, proxy):
    # Each file's first 8 MiB part arrives; its second part hangs at the server.
    proxy.add(Fault("stall", match=_later_part, stall_seconds=120))
    cache_dir = tmp_path / "cache"
    proc = subprocess.Popen(_cli(cache_dir, big_bucket, proxy.url, "--no-progress", "download", "--version", "0.1.0",
                                 "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert wait_for(lambda: len(_sidecars(cache_dir)) == 2 and proxy.stats.gets("big_") == 4, timeout=120), \
            (proxy.stats.requests, _sidecars(cache_dir))
        _settle(proxy)
    except BaseException:
        proc.kill()
        raise
    requests_before = proxy.stats.gets()
    elapsed, out, err = _interrupt(proc)
    assert elapsed < CTRL_C_BOUND, f"took {elapsed:.2f} s to stop"
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and STOPPED.search(lines[0]), err
    assert STOPPED.search(lines[0]).group(1) == "2"
    doc = json.loads(out)  # still one JSON document, with the interruption in it
    assert doc["interrupted"] is True and doc["partial_downloads_kept"] == 2
    assert doc["error"]["exit_code"] == 130 and doc["report"]["fetched"] == ["project_metadata/sessions.csv"]
    assert proxy.stats.gets() == requests_before  # nothing was retried after the signal
    cache = _cache(cache_dir, big_bucket, proxy.url)
    _load(cache, big_bucket.names[0])
    _no_half_written_views(cache)
    assert not any(cache.is_cached(cache.data_entry(i)) for i in BIG_SIZES)
    # Run again: only the missing bytes are fetched, and counted. Each hanging second part had sent a
    # third of its bytes; they were written as they arrived and are kept, so two thirds remain.
    proxy.clear()
    resumed = subprocess.run(_cli(cache_dir, big_bucket, proxy.url, "--no-progress", "download", "--version",
                                  "0.1.0", "--json"), capture_output=True, text=True, env=_env(), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)["report"]
    assert sorted(report["fetched"]) == [f"sessions/{i}/big_{i}.dat" for i in BIG_SIZES]
    assert proxy.stats.gets("big_") == 2
    assert report["bytes_fetched"] == proxy.stats.object_bytes() == (150_000 - 50_000) + (90_000 - 30_000)
    assert report["bytes_resumed"] == 2 * 8 * 1024 * 1024 + 50_000 + 30_000
    _no_half_written_views(cache)
    assert all(cache.is_cached(e) for e in cache.manifest.entries())


LIBRARY_RUN = textwrap.dedent("""
    import sys, warnings
    from releasecache import CloudCache, TransferConfig
    cache = CloudCache.from_s3(sys.argv[1], sys.argv[2], sys.argv[3], endpoint_url=sys.argv[4], progress=False,
                               transfer_config=TransferConfig(part_size=65536, max_parts_in_flight=4, window=6))
    warnings.simplefilter("ignore")
    cache.load_manifest(sys.argv[5])
    if sys.argv[6] == "prefetch":
        cache.prefetch(max_files=4)
    else:
        cache.download_data(sys.argv[7])
    print("finished", flush=True)
""")


@pytest.mark.parametrize("call", ["prefetch", "download_data"])
def test_ctrl_c_stops_library_downloads_within_2_s(call, tmp_path, bulk_bucket, proxy):
    proxy.add(Fault("stall", match=_later_part, stall_seconds=120))
    cache_dir = tmp_path / "cache"
    files = 4 if call == "prefetch" else 1
    proc = subprocess.Popen([sys.executable, "-c", LIBRARY_RUN, str(cache_dir), bulk_bucket.bucket,
                             bulk_bucket.project, proxy.url, bulk_bucket.names[0], call, "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        # every file in flight has its first part on disk and its later parts hanging
        assert wait_for(lambda: len(_sidecars(cache_dir)) == files, timeout=120), _sidecars(cache_dir)
        _settle(proxy)
    except BaseException:
        proc.kill()
        raise
    requests_before = proxy.stats.gets()
    elapsed, out, err = _interrupt(proc)
    assert elapsed < CTRL_C_BOUND, f"took {elapsed:.2f} s to stop"
    assert "finished" not in out and proc.returncode in (130, -signal.SIGINT), err
    found = STOPPED.search(err)
    assert found and int(found.group(1)) == files, err[-3000:]
    assert proxy.stats.gets() == requests_before  # no retries after the signal
    cache = _cache(cache_dir, bulk_bucket, proxy.url)
    _load(cache, bulk_bucket.names[0])
    _no_half_written_views(cache)
    # resume: every byte not yet on disk crosses the wire once, and only those are counted
    already = _resumed_bytes(cache_dir) + sum(e.size for e in cache.manifest.entries() if cache.is_cached(e))
    proxy.clear()
    report = cache.prefetch(progress=False)
    assert report.ok
    total = sum(e.size for e in cache.manifest.entries())
    assert report.bytes_fetched == proxy.stats.object_bytes() == total - already
    assert not _sidecars(cache_dir)
    _no_half_written_views(cache)


# -- 15. a dead endpoint fails fast ---------------------------------------------------------------


def _dead_error_checks(message: str) -> None:
    assert "from_local_cache" in message and "--offline" in message, message


def test_refused_connections_stop_a_prefetch_in_about_10_s_with_one_error(tmp_path, bulk_bucket, proxy, caplog):
    # Real retry policy (the defaults): only the endpoint is dead.
    cache = CloudCache.from_s3(tmp_path / "cache", bulk_bucket.bucket, bulk_bucket.project, endpoint_url=proxy.url,
                               progress=False)
    _load(cache, bulk_bucket.names[0])
    proxy.stop()  # nothing listens on its port any more: connection refused
    caplog.set_level(logging.WARNING, logger="releasecache")
    started = time.monotonic()
    with pytest.raises(E.EndpointUnreachableError) as info:
        cache.prefetch(progress=False, max_files=4)
    elapsed = time.monotonic() - started
    assert elapsed < DEAD_BOUND, f"took {elapsed:.1f} s"
    assert isinstance(info.value, E.RemoteError)
    _dead_error_checks(str(info.value))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) <= 1, [r.getMessage() for r in errors]  # not one line per file
    assert not list((tmp_path / "cache").glob("blobs/*/*/*"))


def test_a_server_that_accepts_and_never_answers_stops_a_prefetch_in_about_10_s(tmp_path, bulk_bucket, proxy,
                                                                                caplog):
    cache = CloudCache.from_s3(tmp_path / "cache", bulk_bucket.bucket, bulk_bucket.project, endpoint_url=proxy.url,
                               progress=False)
    _load(cache, bulk_bucket.names[0])
    proxy.add(Fault("delay", match=lambda method, path, headers: True, stall_seconds=300))
    caplog.set_level(logging.WARNING, logger="releasecache")
    started = time.monotonic()
    with pytest.raises(E.EndpointUnreachableError) as info:
        cache.prefetch(progress=False, max_files=4)
    elapsed = time.monotonic() - started
    assert elapsed < DEAD_BOUND, f"took {elapsed:.1f} s"
    _dead_error_checks(str(info.value))
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) <= 1


def test_opening_a_populated_cache_with_the_endpoint_down_says_to_go_offline(tmp_path, toy_bucket, proxy):
    cache_dir = tmp_path / "cache"
    cache = _cache(cache_dir, toy_bucket, proxy.url)
    _load(cache, toy_bucket.names[0])
    assert cache.prefetch(progress=False).ok
    dead_url = proxy.url
    proxy.stop()
    reopened = _cache(cache_dir, toy_bucket, dead_url)
    started = time.monotonic()
    with pytest.raises(E.EndpointUnreachableError) as info:
        _load(reopened, toy_bucket.names[0])
    assert time.monotonic() - started < DEAD_BOUND
    _dead_error_checks(str(info.value))
    # the command line says the same, in one line, with the network exit code
    result = subprocess.run(_cli(cache_dir, toy_bucket, dead_url, "download", "--version", "0.1.0"),
                            capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 4, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--offline" in lines[0], result.stderr
    # and the suggestion works
    offline = CloudCache.from_local_cache(cache_dir, PROJECT, progress=False)
    _load(offline, toy_bucket.names[0])
    assert offline.download_data(1).stat().st_size == 300_000


def test_command_line_against_a_stalling_endpoint_fails_fast(tmp_path, toy_bucket, proxy):
    proxy.add(Fault("delay", match=lambda method, path, headers: True, stall_seconds=300))
    started = time.monotonic()
    result = subprocess.run(_cli(tmp_path / "cache", toy_bucket, proxy.url, "download", "--version", "0.1.0",
                                 "--json"), capture_output=True, text=True, env=_env(), timeout=120)
    assert time.monotonic() - started < DEAD_BOUND
    assert result.returncode == 4, result.stderr
    doc = json.loads(result.stdout)
    assert doc["error"]["type"] == "EndpointUnreachableError"
    _dead_error_checks(doc["error"]["message"])


def test_an_unresolvable_endpoint_says_to_go_offline(tmp_path, toy_bucket):
    result = subprocess.run(_cli(tmp_path / "cache", toy_bucket, "http://nonexistent.invalid:9000", "download",
                                 "--version", "0.1.0", "--json"), capture_output=True, text=True, env=_env(),
                            timeout=120)
    assert result.returncode == 4, result.stderr
    doc = json.loads(result.stdout)
    assert doc["error"]["type"] == "EndpointUnreachableError"
    _dead_error_checks(doc["error"]["message"])


# -- 14. honest reports ---------------------------------------------------------------------------

KILLABLE = download_one_script(progress=False)


def test_resumed_bytes_are_not_counted_again(tmp_path, toy_bucket, proxy, capsys):
    # Part 3 (bytes 196608-262143) hangs; the other four parts are recorded; then the process is killed.
    proxy.add(Fault("stall", match=_on(BIG, 196608), stall_seconds=60))
    cache_dir = tmp_path / "cache"
    child = subprocess.Popen([sys.executable, "-c", KILLABLE, str(cache_dir), toy_bucket.bucket, PROJECT,
                              proxy.url, toy_bucket.names[0]], env=_env())
    try:
        assert wait_for(lambda: _resumed_bytes(cache_dir) == 300_000 - 65536 if _sidecars(cache_dir) else False,
                        timeout=60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    proxy.clear()
    cache = CloudCache.from_s3(cache_dir, toy_bucket.bucket, PROJECT, endpoint_url=proxy.url, progress=True,
                               transfer_config=TransferConfig(**SMALL_PARTS))
    _load(cache, toy_bucket.names[0])
    plan = cache.plan_prefetch([1], metadata=False)
    assert plan.bytes_to_fetch == 65536 and "64.0 KiB" in plan.summary()  # what will cross the wire
    capsys.readouterr()
    report = cache.prefetch([1], metadata=False)
    assert report.fetched == [BIG] and report.bytes_fetched == 65536 == proxy.stats.object_bytes("probe_A")
    assert report.bytes_resumed == 300_000 - 65536
    assert report.to_dict()["bytes_fetched"] == 65536 and "64.0 KiB" in report.summary()
    bar = capsys.readouterr().err
    assert "100%" in bar and "64.0k/64.0k" in bar, bar  # the bar's total is what crossed the wire


def test_a_file_another_process_fetched_is_reported_as_waited_for(tmp_path, toy_bucket, proxy):
    # The first process holds the big file's lock while its download GET is slowed down
    # (not a one-byte GET asking the size, which some servers need instead of a HEAD).
    def download_get(method, path, headers):
        return _on(BIG)(method, path, headers) and headers.get("Range") != "bytes=0-0"

    slow = proxy.add(Fault("delay", match=download_get, times=1, stall_seconds=6))
    cache_dir = tmp_path / "shared"
    args = _cli(cache_dir, toy_bucket, proxy.url, "--no-progress", "download", "--version", "0.1.0", "--file-id",
                "1", "--no-metadata", "--json")
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    assert wait_for(lambda: slow.applied == 1, timeout=60)  # the first one holds the lock now
    second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [err for _, err in outputs]
    one, two = (json.loads(out)["report"] for out, _ in outputs)
    assert one["fetched"] == [BIG] and one["bytes_fetched"] == 300_000 and one["waited_for"] == []
    assert two["fetched"] == [] and two["waited_for"] == [BIG] and two["bytes_fetched"] == 0
    body_bytes = proxy.stats.object_bytes("probe_A")
    assert 300_000 <= body_bytes <= 300_002  # one download (plus at most two one-byte size probes)


# -- 16. progress with a total --------------------------------------------------------------------


def _toy_bytes(toy_release, version: str) -> int:
    return sum(p.stat().st_size for p in (toy_release[version] / PROJECT).rglob("*") if p.is_file())


def test_prefetch_plan_knows_the_bytes_without_being_asked_and_remembers_them(tmp_path, toy_bucket, toy_release,
                                                                              proxy):
    cache = _cache(tmp_path / "cache", toy_bucket, proxy.url)
    _load(cache, toy_bucket.names[0])
    assert all(e.size is None for e in cache.manifest.entries())  # the toy manifests carry no sizes
    plan = cache.plan_prefetch()
    assert plan.bytes_to_fetch == _toy_bytes(toy_release, "0.1.0")
    assert "? B" not in plan.summary()
    # a new cache object on the same directory asks nobody again
    proxy.clear()
    again = _cache(tmp_path / "cache", toy_bucket, proxy.url)
    _load(again, toy_bucket.names[0])
    before = sum(proxy.stats.requests.values())
    assert again.plan_prefetch().bytes_to_fetch == _toy_bytes(toy_release, "0.1.0")
    assert sum(proxy.stats.requests.values()) == before


def test_command_line_progress_bar_has_a_total_a_percentage_and_an_eta(tmp_path, toy_bucket, toy_release):
    result = subprocess.run(_cli(tmp_path / "cache", toy_bucket, toy_bucket.endpoint_url, "--progress", "download",
                                 "--version", "0.1.0"), capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    bars = result.stderr.replace("\r", "\n")
    final = re.search(r"100%\|[^|]*\| (\S+)/(\S+) \[(\d\d:\d\d)<(\d\d:\d\d)", bars)
    assert final and final.group(1) == final.group(2), bars  # n/total at 100 %, elapsed<remaining
    assert "? B" not in result.stderr


SINGLE = download_one_script(progress=True)


def test_single_download_bar_takes_its_total_from_the_first_response(tmp_path, toy_bucket):
    result = subprocess.run([sys.executable, "-c", SINGLE, str(tmp_path / "cache"), toy_bucket.bucket, PROJECT,
                             toy_bucket.endpoint_url, toy_bucket.names[0]], capture_output=True, text=True,
                            env=_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"100%\|[^|]*\| 293k/293k \[", result.stderr.replace("\r", "\n")), result.stderr


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

