"""The roles of the chaos soak (tests/test_chaos_soak.py), one process each.

``python -m tests.support.soak '<json settings>'`` runs one role against the
shared cache and prints one JSON line at the end: ``role``, ``errors`` (each
``"<ExceptionType>: message"``) and ``wrong`` (a path the cache returned whose
bytes are not the manifest's: must never happen). The driver SIGKILLs these
processes at random moments; a killed process prints nothing.

Roles (``role`` in the settings):

``download``
    Load a random version and ``ensure`` a random handful of its files, hashing each path.
``prefetch``
    Prefetch a whole version, then hash every file of it.
``switch``
    Load one version, fetch a few files, load the other, fetch a few (the cache's
    "last used" state moves back and forth).
``verify``
    ``releasecache verify --full --json`` on the whole cache (the CLI, in this process).
``gc``
    ``releasecache gc --delete --partial-age-days 0 --json`` (the CLI, in this process), half
    the time keeping both versions, half the time only one with ``--window-days 0``, so that
    the other version's files are deleted while other processes may be fetching them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import sys
import traceback
from typing import Any

from tests.support.workers import open_cache, wrong_bytes

ROLES = ("download", "prefetch", "switch", "verify", "gc")


def _name(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _fetch(cache: Any, entries: list[Any], out: dict[str, Any]) -> None:
    """``ensure`` each entry and hash what it got, under a read lease (so a concurrent gc that
    does not keep this version cannot delete the blob while it is hashed)."""
    for entry in entries:
        try:
            with cache.reading(entry):
                blob = cache.store.find_blob(entry.file_hash)
                problem = wrong_bytes(blob, entry.file_hash) if blob else f"{entry.relative_path}: no blob"
        except Exception as exc:  # noqa: BLE001 - every failure is reported, classified by the driver
            out["errors"].append(_name(exc))
            continue
        if problem:
            out["wrong"].append(problem)
        out["files"] += 1


def _cli(settings: dict[str, Any], *args: str) -> tuple[int, dict[str, Any] | None]:
    from releasecache.cli import main

    argv = ["--cache-dir", settings["cache_dir"], "--bucket", settings["bucket"], "--project",
            settings["project"], "--endpoint-url", settings["endpoint_url"], *args]
    buf = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf):
        try:
            main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    try:
        return code, json.loads(buf.getvalue())
    except ValueError:
        return code, None


def run(settings: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(settings.get("seed"))
    role = settings["role"]
    versions = settings["versions"]
    out: dict[str, Any] = {"role": role, "pid": os.getpid(), "errors": [], "wrong": [], "files": 0}
    try:
        if role in ("download", "prefetch", "switch"):
            cache = open_cache({**settings, "manifest": None})
            if role == "switch":
                order = rng.sample(versions, len(versions))
            else:
                order = [rng.choice(versions)]
            for name in order:
                import warnings

                from releasecache import OutdatedManifestWarning

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", OutdatedManifestWarning)
                    cache.load_manifest(name)
                entries = list(cache.manifest.entries())
                if role == "prefetch":
                    report = cache.prefetch(progress=False, max_files=3)
                    out["errors"].extend(f"prefetch: {why}" for why in report.failed.values())
                    _fetch(cache, entries, out)
                else:
                    _fetch(cache, rng.sample(entries, min(len(entries), rng.randint(2, 6))), out)
        elif role == "verify":
            code, report = _cli(settings, "verify", "--full", "--json")
            out["exit"] = code
            if report is None:
                out["errors"].append(f"verify printed no JSON (exit {code})")
            else:
                out["checked"] = report.get("checked")
                out["wrong"].extend(f"verify found corrupt {rec['file_hash'][:16]}: {rec['reason']}"
                                    for rec in report.get("corrupt", []))
        elif role == "gc":
            if rng.random() < 0.5:  # keep everything recently used: only stale partials go
                args = [x for v in versions for x in ("--keep", v)]
            else:  # evict one version outright, while others may be using it
                args = ["--keep", rng.choice(versions), "--window-days", "0"]
            out["args"] = args
            code, report = _cli(settings, "gc", *args, "--delete", "--partial-age-days", "0", "--json")
            out["exit"] = code
            if code != 0 or report is None:
                out["errors"].append(f"gc failed (exit {code})")
            else:
                out["deleted"] = len(report.get("deleted_blobs", []))
                out["partials"] = len(report.get("removed_partials", []))
                out["busy"] = len(report.get("busy", []))
        else:
            raise ValueError(f"unknown role {role!r}")
    except Exception:  # noqa: BLE001
        out["errors"].append(traceback.format_exc(limit=8))
    return out


if __name__ == "__main__":
    result = run(json.loads(sys.argv[1]))
    print(json.dumps(result), flush=True)
