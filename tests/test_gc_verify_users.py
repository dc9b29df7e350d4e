"""gc that respects other users (issue 11, item 3) and verification people can afford (item 7).

Usage is recorded per manifest in the cache (``.usage/``), by whichever user
loads the manifest; gc keeps every manifest used within its window, skips
blobs another process holds (downloading, or reading through
``cache.reading``), and its dry run says per manifest what would go and why.
A full verify is incremental: limited per run by time or bytes, oldest-verified
first, continuing an unfinished pass; an integrity-on-open policy checks files
as they are handed out.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from releasecache.cache.budget import read_usage
from releasecache.store.stamps import last_verified, read_stamp
from tests.support.users import ALICE, BOB, can_switch_users, lab_directory, shared_tmp

from ._reliability import Worker, blake, bulk_bucket, open_cache, settings  # noqa: F401 (fixture)


@pytest.fixture
def lab():
    why = can_switch_users()
    if why is not None:
        pytest.skip(f"no second uid here: {why}")
    root = shared_tmp()
    try:
        yield SimpleNamespace(root=root, cache=lab_directory(root / "lab-cache"),
                              homes={u.name: root / "home" / u.name for u in (ALICE, BOB)})
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _blobs_of(bucket, name):
    return {e.file_hash for e in {m.name: m for m in bucket.manifests}[name].entries()}


def test_gc_keeps_what_another_user_used_within_the_window(lab, bulk_bucket):
    """alice uses 0.1.0, bob 0.2.0, in one lab cache. bob's gc keeping only 0.2.0 deletes none of
    alice's files while her use is recent, and says so per manifest; once her use is older than the
    window, his dry run names what would go and why, and the real run deletes exactly that."""
    v1, v2 = bulk_bucket.names
    cli = ["--cache-dir", str(lab.cache), "--bucket", bulk_bucket.bucket, "--project", bulk_bucket.project,
           "--endpoint-url", bulk_bucket.endpoint_url]
    for user, version in ((ALICE, v1), (BOB, v2)):
        done = user.cli(*cli, "download", "--version", version, "--json", home=lab.homes[user.name])
        assert done.returncode == 0, done.stderr[-3000:]
    uses = read_usage(SimpleNamespace(root=lab.cache))
    assert set(uses) == {v1, v2}
    assert (lab.cache / ".usage" / v1).stat().st_uid == ALICE.uid  # recorded in the cache, by her
    assert not any("usage" in p.name for p in lab.homes["alice"].rglob("*"))  # not in her home

    only_v1 = _blobs_of(bulk_bucket, v1) - _blobs_of(bulk_bucket, v2)
    done = BOB.cli(*cli, "gc", "--keep", v2, "--delete", "--json", home=lab.homes["bob"])
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["deleted_blobs"] == []
    why = {m["name"]: m for m in report["manifests"]}
    assert why[v1]["kept"] and "within the 30-day window" in why[v1]["why"]
    assert why[v2]["kept"] and why[v2]["why"] == "asked to keep it"

    # Forty days later (her record is aged as time would age it: the use is its mtime).
    record_path = lab.cache / ".usage" / v1
    then = record_path.stat().st_mtime - 40 * 86400
    os.utime(record_path, (then, then))
    done = BOB.cli(*cli, "gc", "--keep", v2, "--json", home=lab.homes["bob"])
    dry = json.loads(done.stdout)
    assert dry["dry_run"] and set(dry["deleted_blobs"]) == only_v1
    old = {m["name"]: m for m in dry["manifests"]}[v1]
    assert not old["kept"] and "last used 40 days ago" in old["why"] and "30-day window" in old["why"]
    assert old["blobs"] == len(only_v1) and old["bytes"] > 0
    assert "would remove" in BOB.cli(*cli, "gc", "--keep", v2, home=lab.homes["bob"]).stdout
    # bob loading 0.1.0 is a use too: his use of her record keeps it again.
    b = BOB.worker({**settings(lab.cache, bulk_bucket, bulk_bucket.endpoint_url, v1, action="fetch"), "ids": []},
                   home=lab.homes["bob"])
    assert b["errors"] == [], b["stderr"][-2000:]
    assert time.time() - record_path.stat().st_mtime < 600
    done = BOB.cli(*cli, "gc", "--keep", v2, "--json", home=lab.homes["bob"])
    assert {m["name"]: m for m in json.loads(done.stdout)["manifests"]}[v1]["kept"]
    os.utime(record_path, (then, then))
    done = BOB.cli(*cli, "gc", "--keep", v2, "--delete", "--json", home=lab.homes["bob"])
    assert set(json.loads(done.stdout)["deleted_blobs"]) == only_v1
    done = BOB.cli(*cli, "verify", "--version", v2, "--require-complete", home=lab.homes["bob"])
    assert done.returncode == 0, done.stdout[-2000:]
    # A wider window (by variable) would have kept it: the window is configurable.
    done = BOB.cli(*cli, "gc", "--keep", v2, "--json", home=lab.homes["bob"],
                   env={"RELEASECACHE_GC_WINDOW_DAYS": "60"})
    assert {m["name"]: m for m in json.loads(done.stdout)["manifests"]}[v1]["kept"]


def test_gc_never_deletes_a_blob_another_process_is_reading(tmp_path, bulk_bucket):
    """A process reading a file through ``cache.reading`` holds a shared lock: gc (keeping only the
    other version, no window) skips that blob as busy and deletes the rest; after the reader is
    done, the next gc deletes it."""
    v1, v2 = bulk_bucket.names
    cache = open_cache(tmp_path / "c", bulk_bucket, manifest=v1)
    assert cache.prefetch(progress=False).ok
    victim = next(e for e in cache.manifest.entries() if e.file_hash not in _blobs_of(bulk_bucket, v2)
                  and e.relative_path.endswith(".dat"))
    file_id = next(k for k, v in cache.manifest.data_files.items() if v.file_hash == victim.file_hash)
    stop = tmp_path / "stop"
    reader = Worker(settings(tmp_path / "c", bulk_bucket, bulk_bucket.endpoint_url, v1, action="hold_reading",
                             file_id=file_id, stop_file=str(stop)))
    try:
        assert reader.wait_for_line("reading"), reader.stderr()[-3000:]
        report = cache.gc(keep=[v2], dry_run=False, window_days=0)
        assert victim.file_hash in report.busy and victim.file_hash not in report.deleted_blobs
        assert cache.store.has_own_blob(victim.file_hash)
        assert len(report.deleted_blobs) == len(_blobs_of(bulk_bucket, v1) - _blobs_of(bulk_bucket, v2)) - 1
    finally:
        stop.touch()
    assert reader.wait_for_line("done"), reader.stderr()[-3000:]
    reader.finish(30)
    again = cache.gc(keep=[v2], dry_run=False, window_days=0)
    assert again.deleted_blobs == [victim.file_hash]


def test_full_verify_is_incremental_and_resumable(tmp_path, bulk_bucket):
    """A byte budget stops a full verify part way; each next run continues the same pass (skipping
    what it already hashed, oldest-verified first) until the pass is complete, hashing every blob
    exactly once over the runs; then a new pass starts. A run stopped by a time budget continues too.
    Every hashed blob's stamp records when."""
    v1, _v2 = bulk_bucket.names
    cache = open_cache(tmp_path / "c", bulk_bucket, manifest=v1)
    assert cache.prefetch(progress=False).ok
    blobs = dict(cache.store.iter_blobs())
    total = sum(p.stat().st_size for p in blobs.values())
    budget = total // 4
    started = time.time()
    runs = []
    for _ in range(10):
        report = cache.verify(mode="full", max_bytes=budget)
        runs.append(report)
        assert report.ok, report.summary()
        if report.complete:
            break
    assert len(runs) >= 3, "the budget never stopped a run: the test proves nothing"
    assert not runs[0].complete and runs[0].remaining > 0 and "left for the next run" in runs[0].summary()
    assert all(r.resumed for r in runs[1:]) and len({r.pass_started for r in runs}) == 1
    assert sum(r.hashed for r in runs) == len(blobs)  # each blob hashed once in the pass
    assert [r.skipped for r in runs[1:]] == [sum(x.hashed for x in runs[:i + 1]) for i in range(len(runs) - 1)]
    assert all(last_verified(read_stamp(cache.store.stamps_dir, h)) >= started for h in blobs)
    fresh = cache.verify(mode="full")  # the pass was complete: a new one hashes everything again
    assert not fresh.resumed and fresh.hashed == len(blobs) and fresh.complete

    slow = cache.verify(mode="full", max_seconds=0.0)  # at least one blob, then the clock says stop
    assert slow.hashed >= 1 and not slow.complete
    rest = cache.verify(mode="full")
    assert rest.resumed and rest.skipped == slow.hashed and rest.hashed == len(blobs) - slow.hashed

    # The CLI: the same budget, in words.
    from releasecache.cli import main

    with pytest.raises(SystemExit) as code:
        main(["--cache-dir", str(tmp_path / "c"), "--bucket", bulk_bucket.bucket, "--project", bulk_bucket.project,
              "--endpoint-url", bulk_bucket.endpoint_url, "verify", "--full", "--restart", "--max-bytes",
              str(budget)])
    assert code.value.code in (0, None)


@pytest.mark.parametrize("policy", ["never", "fast", "full"])
def test_integrity_on_open_policy(tmp_path, bulk_bucket, policy):
    """``integrity="never"`` (the default) hands out what is there; ``"fast"`` catches a blob whose
    stamp no longer matches (edited: its mtime changed) and downloads it again; ``"full"`` also
    catches bit rot that keeps size and mtime."""
    v1, _ = bulk_bucket.names
    cache = open_cache(tmp_path / "c", bulk_bucket, manifest=v1, integrity=policy)
    assert cache.integrity == policy
    ids = sorted(cache.manifest.data_files)[:2]
    edited, rotted = (cache.data_entry(i) for i in ids)
    for e in (edited, rotted):
        cache.ensure(e)
    for entry, keep_mtime in ((edited, False), (rotted, True)):
        blob = cache.store.blob_path(entry.file_hash)
        st = blob.stat()
        blob.chmod(0o644)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        blob.chmod(0o444)
        if keep_mtime:
            os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    got = {e.relative_path: blake(cache.ensure(e)) == e.file_hash for e in (edited, rotted)}
    if policy == "never":
        assert got == {edited.relative_path: False, rotted.relative_path: False}
    elif policy == "fast":
        assert got == {edited.relative_path: True, rotted.relative_path: False}
    else:
        assert got == {edited.relative_path: True, rotted.relative_path: True}
    if policy != "never":
        assert any((tmp_path / "c" / ".quarantine").iterdir())


def test_full_verify_killed_midway_continues_where_it_stopped(tmp_path, bulk_bucket):
    """``releasecache verify --full`` on a slow filesystem (every read takes 50 ms: the FUSE
    passthrough of tests/support/nolockfs.py) is SIGKILLed once it has hashed a few blobs; the
    next run continues the same pass and hashes only the rest."""
    import signal
    import subprocess
    import sys

    from tests.support import nolockfs

    if nolockfs.available() is not None and not os.path.exists("/dev/fuse"):
        pytest.skip(f"this machine cannot mount FUSE filesystems: {nolockfs.available()}")
    assert nolockfs.available() is None, nolockfs.available()
    v1, _ = bulk_bucket.names
    with nolockfs.NoLockMount(tmp_path / "backing", tmp_path / "mnt", "slow") as mount:
        cache_dir = mount.mountpoint / "cache"
        cache = open_cache(cache_dir, bulk_bucket, manifest=v1)
        assert cache.prefetch(progress=False).ok
        blobs = dict(cache.store.iter_blobs())
        started = time.time()
        argv = [str(Path(sys.executable).with_name("releasecache")), "--cache-dir", str(cache_dir), "--bucket",
                bulk_bucket.bucket, "--project", bulk_bucket.project, "--endpoint-url", bulk_bucket.endpoint_url,
                "verify", "--full", "--json"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        stamps = tmp_path / "backing" / "cache" / ".stamps"  # read beside the mount: reading through it is slow

        def hashed_since() -> int:
            return sum(last_verified(read_stamp(stamps, h)) >= started for h in blobs)

        deadline = time.monotonic() + 60
        while hashed_since() < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "verify finished before it could be killed"
        done_before = hashed_since()
        assert 3 <= done_before < len(blobs)
        report = cache.verify(mode="full")
        assert report.resumed and report.complete and report.ok, report.summary()
        assert report.skipped >= done_before and report.hashed == len(blobs) - report.skipped
