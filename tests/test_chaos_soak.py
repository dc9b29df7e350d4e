"""The chaos soak (issue 11, item 6).

Several processes share one cache: they download, prefetch, switch versions, run
``verify --full`` and ``gc``, all through a fault-injecting proxy, while this
driver SIGKILLs random ones. Afterwards every invariant holds:

* every blob's content hashes to its name;
* every visible view file has exactly its manifest's bytes;
* no lock left by a killed process blocks anyone;
* after one more (fault-free, kill-free) pass every version's view is complete and verifies.

It runs for ``RELEASECACHE_SOAK_SECONDS`` (default 90) and prints what it did
(processes per role, kills, faults injected, GETs). For a longer soak::

    RELEASECACHE_SOAK_SECONDS=1800 python -m pytest -s tests/test_chaos_soak.py
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from releasecache.store.locks import BlobLock
from tests.support.proxy import Fault
from tests.support.soak import ROLES

from ._reliability import REPO_ROOT, blake, bulk_bucket, load, open_cache  # noqa: F401 (fixture)

SOAK_SECONDS = float(os.environ.get("RELEASECACHE_SOAK_SECONDS", "90"))
SLOTS = 4
#: Faults on object GETs: the first rule that fires wins, so the rare ones come first.
FAULTS = [("reset", 0.03), ("500", 0.03), ("503", 0.02), ("truncate", 0.03), ("corrupt", 0.01),
          ("stall", 0.01), ("delay", 1.0)]
#: Errors a role may report because an injected fault outlived its retries. Anything else fails the soak.
EXPECTED = ("IntegrityError", "DownloadError", "TransientRemoteError", "prefetch:")
#: ... or because a gc told to keep only the other version deleted it three times while it was fetched.
GC_RACE = "by a concurrent gc"  # "removed three times by ...", "deleted by ... three times"


@pytest.mark.timeout(SOAK_SECONDS + 600)
def test_chaos_soak_keeps_every_invariant(tmp_path, bulk_bucket, proxy, capsys):
    rng = random.Random(int(os.environ.get("RELEASECACHE_SOAK_SEED", "11")))
    for kind, p in FAULTS:
        proxy.add(Fault(kind, probability=p, stall_seconds=0.02 if kind == "delay" else 3.0,
                        retry_after="0" if kind == "503" else None))
    cache_dir = tmp_path / "soak"
    base = {"cache_dir": str(cache_dir), "bucket": bulk_bucket.bucket, "project": bulk_bucket.project,
            "endpoint_url": proxy.url, "versions": bulk_bucket.names,
            "transfer": {"part_size": 64 * 1024, "max_parts_in_flight": 3, "window": 4,
                         "backoff_base": 0.01, "backoff_max": 0.1},
            "s3_options": {"connect_timeout": 2, "read_timeout": 1}}
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    started = collections.Counter()
    killed = collections.Counter()
    finished = collections.Counter()
    results: list[dict] = []
    running: dict[int, tuple[subprocess.Popen, str, Path, float]] = {}
    seq = 0
    t0 = time.monotonic()
    next_kill = t0 + rng.uniform(0.5, 2.0)

    def reap(pid: int, proc: subprocess.Popen, role: str, out: Path) -> None:
        code = proc.wait()
        if code == -signal.SIGKILL:
            return
        finished[role] += 1
        lines = out.read_text().splitlines()
        if not lines:
            results.append({"role": role, "errors": [f"exit {code} with no report"], "wrong": []})
        else:
            results.append(json.loads(lines[-1]))

    try:
        while time.monotonic() - t0 < SOAK_SECONDS:
            for pid, (proc, role, out, _since) in list(running.items()):
                if proc.poll() is not None:
                    del running[pid]
                    reap(pid, proc, role, out)
            while len(running) < SLOTS:
                role = rng.choices(ROLES, weights=[4, 2, 2, 1, 1])[0]
                seq += 1
                out = tmp_path / f"role-{seq}.out"
                with open(out, "w") as fh:
                    proc = subprocess.Popen([sys.executable, "-m", "tests.support.soak",
                                             json.dumps({**base, "role": role, "seed": seq})],
                                            cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.DEVNULL)
                running[proc.pid] = (proc, role, out, time.monotonic())
                started[role] += 1
            now = time.monotonic()
            if now >= next_kill:
                # A victim that has had time to import and start working (imports take about a second).
                ready = [pid for pid, (_p, _r, _o, since) in running.items() if now - since > 1.0]
                if ready:
                    pid = rng.choice(ready)
                    proc, role, _out, _since = running.pop(pid)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    killed[role] += 1
                next_kill = now + rng.uniform(0.8, 3.0)
            time.sleep(0.05)
        for pid, (proc, role, out, _since) in list(running.items()):  # let the last ones finish
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
            reap(pid, proc, role, out)
    finally:  # never leave a role process behind, whatever failed
        for proc, _role, _out, _since in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    soak_seconds = time.monotonic() - t0
    faults = dict(proxy.stats.faults)
    gets = proxy.stats.gets()

    wrong = [w for r in results for w in r.get("wrong", [])]
    unexpected = [e for r in results for e in r["errors"] if not e.startswith(EXPECTED) and GC_RACE not in e]
    deleted = sum(r.get("deleted", 0) for r in results)
    expected_errors = sum(len(r["errors"]) for r in results) - len(unexpected)

    # The invariants, checked with no process running.
    proxy.clear()
    bad_blobs = []
    checker = open_cache(cache_dir, bulk_bucket, proxy.url)
    for h, path in checker.store.iter_blobs():
        if blake(path) != h:
            bad_blobs.append(h)
    wrong_views = []
    for name in bulk_bucket.names:
        load(checker, name)
        for entry in checker.manifest.entries():
            view = checker.store.view_path(checker.manifest.view_dir_name, entry.relative_path)
            if os.path.exists(view) and blake(view) != entry.file_hash:
                wrong_views.append(f"{name}: {entry.relative_path}")
    blocked = []
    locks = checker.store.locks_dir
    for lock_file in sorted(locks.glob("*.lock")) + sorted(locks.glob("*.lease")):
        h = lock_file.name.split(".")[0]
        lock = BlobLock(locks / f"{h}.lock", locks / f"{h}.owner")
        if not lock.acquire(timeout=5):
            blocked.append(h)
        else:
            lock.release()
    incomplete = {}
    for name in bulk_bucket.names:
        load(checker, name)
        report = checker.prefetch(progress=False)
        if not report.ok:
            incomplete[name] = report.failed
        for entry in checker.manifest.entries():
            view = checker.store.view_path(checker.manifest.view_dir_name, entry.relative_path)
            if not os.path.exists(view) or blake(view) != entry.file_hash:
                incomplete.setdefault(name, {})[entry.relative_path] = "missing or wrong after one more pass"
    final = checker.verify(mode="full")

    with capsys.disabled():
        print(f"\nchaos soak: {soak_seconds:.0f} s, {sum(started.values())} processes started "
              f"({dict(started)}), {sum(killed.values())} SIGKILLed ({dict(killed)}), "
              f"{sum(finished.values())} finished; {gets} object GETs, faults injected {faults}; gc deleted {deleted} blobs; "
              f"{expected_errors} errors from injected faults, {len(unexpected)} unexpected; "
              f"{len(wrong)} wrong files returned, {len(bad_blobs)} bad blobs, {len(wrong_views)} wrong views, "
              f"{len(blocked)} blocked locks; final full verify: {final.checked} blobs, ok={final.ok}")
    # on a quiet machine most processes finish before the driver picks them; a few kills still prove recovery
    assert sum(killed.values()) >= max(3, SOAK_SECONDS // 30), "too few kills: the soak proved little"
    assert sum(v for k, v in faults.items() if k != "delay") > 0
    assert finished["verify"] + finished["gc"] > 0 or SOAK_SECONDS < 30
    assert wrong == []
    assert unexpected == []
    assert bad_blobs == [] and wrong_views == []
    assert blocked == []
    assert incomplete == {}
    assert final.ok, final.summary()
