"""Worker processes for the reliability tests: fetchers, a gc loop, constrained fetchers.

Each worker takes one JSON-able dict of settings. They run in separate
processes (``multiprocessing`` with the spawn method, or
``python -m tests.support.workers '<json>'``) so that locks, crashes and
resource limits are real.

Settings used by every worker: ``cache_dir``, ``bucket``, ``project``,
``endpoint_url``, ``manifest`` (name), and optionally ``transfer`` (a
:class:`~releasecache.transfer.config.TransferConfig` dict), ``s3_options``,
``cache_options`` (extra :class:`~releasecache.cache.cloud.CloudCache` keywords).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import traceback
import warnings
from typing import Any


def download_one_script(*, progress: bool) -> str:
    """A ``python -c`` script: ``<cache_dir> <bucket> <project> <endpoint_url> <manifest>``, then
    download data file 1 in 64 KiB parts, four in flight (a process a test may kill mid-file)."""
    return textwrap.dedent(f"""
        import sys, warnings
        from releasecache import CloudCache, TransferConfig
        cache = CloudCache.from_s3(sys.argv[1], sys.argv[2], sys.argv[3], endpoint_url=sys.argv[4], progress={progress},
                                   transfer_config=TransferConfig(part_size=65536, max_parts_in_flight=4, window=6))
        warnings.simplefilter("ignore")
        cache.load_manifest(sys.argv[5])
        cache.download_data(1)
    """)


def open_cache(settings: dict[str, Any]) -> Any:
    from releasecache import CloudCache, OutdatedManifestWarning, TransferConfig

    cache = CloudCache.from_s3(
        settings["cache_dir"], settings["bucket"], settings["project"], endpoint_url=settings["endpoint_url"],
        transfer_config=TransferConfig(**settings.get("transfer", {})), progress=False,
        s3_options=settings.get("s3_options") or {"connect_timeout": 2}, **settings.get("cache_options", {}))
    if settings.get("manifest"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutdatedManifestWarning)
            cache.load_manifest(settings["manifest"])
    return cache


def wrong_bytes(path: Any, file_hash: str) -> str | None:
    """Why the file at ``path`` is not the blob ``file_hash`` (unreadable, or other bytes), or None."""
    from releasecache.utils import hash_file

    try:
        digest = hash_file(os.path.realpath(path))
    except OSError as exc:
        return f"{path}: returned but unreadable: {exc}"
    return None if digest == file_hash else f"{path}: blake2b {digest[:16]}… is not {file_hash[:16]}…"


def fetch_and_verify(settings: dict[str, Any], barrier: Any = None) -> dict[str, Any]:
    """Fetch ``ids`` (data file ids; None = all) and ``metadata`` names, in the given order,
    each with ``ensure``; hash every returned path. Returns errors and counts."""
    result: dict[str, Any] = {"pid": os.getpid(), "errors": [], "files": 0}
    try:
        cache = open_cache(settings)
        entries = [cache.metadata_entry(n) for n in settings.get("metadata", [])]
        entries += [cache.data_entry(i) for i in settings.get("ids", [])]
        if barrier is not None:
            barrier.wait(60)
        if settings.get("prefetch"):
            report = cache.prefetch([e.name for e in entries if e.name in cache.manifest.data_files],
                                    metadata=False, progress=False, max_files=settings.get("max_files", 4))
            result["errors"].extend(f"{p}: {why}" for p, why in report.failed.items())
        for entry in entries:
            try:
                path = cache.ensure(entry)
            except Exception as exc:  # report every failure, keep going
                result["errors"].append(f"{entry.relative_path}: {type(exc).__name__}: {exc}")
                continue
            problem = wrong_bytes(path, entry.file_hash)
            if problem:
                result["errors"].append(problem)
            result["files"] += 1
    except Exception:
        result["errors"].append(traceback.format_exc())
    return result


def prefetch_forever(settings: dict[str, Any]) -> None:
    """Prefetch the whole manifest, announcing 'ready' first and 'done' at the end (for kill tests)."""
    cache = open_cache(settings)
    print("ready", flush=True)
    report = cache.prefetch(progress=False, max_files=settings.get("max_files", 3))
    print("done" if report.ok else f"failed {json.dumps(report.failed)}", flush=True)


def gc_loop(settings: dict[str, Any]) -> None:
    """Run gc(keep=...) without a dry run until ``stop_file`` exists; print a JSON summary."""
    cache = open_cache({**settings, "manifest": None})
    busy, deleted, rounds, errors = set(), 0, 0, []
    print("ready", flush=True)
    while not os.path.exists(settings["stop_file"]):
        try:
            report = cache.gc(keep=settings["keep"], dry_run=False, partial_age_days=0,
                              window_days=settings.get("window_days"))
            busy.update(report.busy)
            deleted += len(report.deleted_blobs)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        rounds += 1
        time.sleep(settings.get("pause", 0.02))
    print(json.dumps({"rounds": rounds, "busy": sorted(busy), "deleted": deleted, "errors": errors}), flush=True)


def constrained_fetch(settings: dict[str, Any]) -> None:
    """Fetch one data file under a constraint (``fsize_limit`` bytes via RLIMIT_FSIZE, or
    ``drop_to_uid``) and print what happened as JSON."""
    import resource
    import signal

    if settings.get("fsize_limit") is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        limit = int(settings["fsize_limit"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    out: dict[str, Any] = {}
    try:
        cache = open_cache(settings)  # imports everything while the interpreter's files are readable
        if settings.get("drop_to_uid") is not None:
            # ... including the transport, which a cache builds on its first request (the
            # interpreter lives where the unprivileged user cannot read)
            getattr(cache.remote, "client", None)
            os.setgid(int(settings["drop_to_gid"]))
            os.setuid(int(settings["drop_to_uid"]))
        path = cache.download_data(settings["file_id"])
        out["ok"] = str(path)
    except Exception as exc:
        from releasecache.errors import ReleaseCacheError

        out.update(error=type(exc).__name__, message=str(exc), errno=getattr(exc, "errno", None),
                   ours=isinstance(exc, ReleaseCacheError))
    print(json.dumps(out), flush=True)


def hold_lock(settings: dict[str, Any]) -> None:
    """Hold a blob lock (``lock`` path, ``kind`` (default: auto), ``lease``) for ``seconds``;
    print 'held' and 'released'."""
    from pathlib import Path

    from releasecache.store.locks import BlobLock

    path = Path(settings["lock"])
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = BlobLock(path, path.with_suffix(".owner"), kind=settings.get("kind"),
                    lease=settings.get("lease", 120.0))
    lock.acquire(timeout=60)
    print("held", flush=True)
    time.sleep(settings.get("seconds", 10))
    if settings.get("mark_before_release"):
        Path(settings["mark_before_release"]).touch()
    lock.release()
    print("released", flush=True)


def hold_reading(settings: dict[str, Any]) -> None:
    """Read data file ``file_id`` inside ``cache.reading()`` until ``stop_file`` exists; print 'reading'."""
    cache = open_cache(settings)
    with cache.reading(cache.data_entry(settings["file_id"])) as path:
        with open(path, "rb") as fh:
            fh.read(1)
            print("reading", flush=True)
            deadline = time.monotonic() + settings.get("seconds", 60)
            while not os.path.exists(settings["stop_file"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            fh.read()
    print("done", flush=True)


def fetch(settings: dict[str, Any]) -> None:
    """:func:`fetch_and_verify` as a command: print its result as JSON."""
    print(json.dumps(fetch_and_verify(settings)), flush=True)


ACTIONS = {"fetch": fetch, "hold_reading": hold_reading, "prefetch_forever": prefetch_forever, "gc_loop": gc_loop, "constrained_fetch": constrained_fetch,
           "hold_lock": hold_lock}


def main(argv: list[str] | None = None) -> None:
    settings = json.loads((argv or sys.argv[1:])[0])
    ACTIONS[settings["action"]](settings)


if __name__ == "__main__":
    main()
