"""A short tour of releasecache on a real (loopback) S3 server: ``python -m tests.support.demo``.

It starts an S3-compatible server on 127.0.0.1, publishes a three-version
release into a versioned, public-read bucket, and walks through what a new
user does: list manifests, open an old version, download, switch to the
latest, and compare versions.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

from releasecache import OutdatedManifestWarning
from releasecache.utils import human_bytes as _human
from .proxy import FaultProxy
from .s3server import S3Server, publish_fixture


def _say(title: str) -> None:
    # Bold only on a terminal: piped or logged output gets no escape codes.
    if sys.stdout.isatty():
        print(f"\n\033[1m== {title}\033[0m")
    else:
        print(f"\n== {title}")


def _tree(root: Path, below: str, limit: int = 6) -> None:
    shown = 0
    for path in sorted((root / below).rglob("*")):
        if path.is_symlink():
            target = os.readlink(path)
            print(f"  {path.relative_to(root)} -> {target[:target.rindex('/') + 13]}…")
            shown += 1
            if shown >= limit:
                print("  …")
                return


def run(workdir: Path, *, temporary: bool = False) -> None:
    from .fixtures.vbn import build_vbn_release
    from releasecache.vbn.project import BUCKET_NAME, PROJECT_NAME, ProjectCache

    with S3Server() as server, FaultProxy(server.endpoint_url) as counter:
        _say(f"An S3-compatible server is running at {server.endpoint_url} (bucket versioning on, public read)")
        release = build_vbn_release(workdir / "release")
        manifests = publish_fixture(server, BUCKET_NAME, PROJECT_NAME, release)
        print(f"Published {len(manifests)} versions of a small synthetic '{PROJECT_NAME}' release (real layout, "
              "CSV columns and NWB structure); each manifest pins every file by URL, S3 version id and blake2b.")

        cache_dir = workdir / "cache"
        # Requests go through a counting proxy, so the demo can show exactly what crossed the wire.
        cache = ProjectCache.from_s3(cache_dir, endpoint_url=counter.url, progress=False)
        _say("cache = ProjectCache.from_s3(cache_dir, endpoint_url=...)")
        print(f"  current manifest: {cache.current_manifest()}; object downloads so far: {counter.stats.gets()}")

        _say("cache.list_manifest_file_names()  (sorted by semver)")
        for name in cache.list_manifest_file_names():
            print(f"  {name}")

        _say(f"cache.load_manifest('{manifests[0].name}')  — an old version")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", OutdatedManifestWarning)
            cache.load_manifest(manifests[0].name)
        for w in caught:
            print(f"  {w.category.__name__}: " + str(w.message).replace("\n", "\n    "))

        _say("cache.get_ecephys_session_table() / get_unit_table()  — each CSV is fetched when first asked for")
        sessions = cache.get_ecephys_session_table()
        print(sessions[["session_type", "genotype", "unit_count", "probe_count"]].to_string(max_colwidth=40))
        print(f"  units: {len(cache.get_unit_table())} rows; object downloads so far: {counter.stats.gets()}")

        session_id = int(sessions.index[0])
        _say(f"session = cache.get_ecephys_session({session_id})")
        with cache.get_ecephys_session(session_id) as session:
            print(f"  {len(session.get_units())} units, {len(session.trials)} trials, "
                  f"{len(session.stimulus_presentations)} stimulus presentations; LFP files stay remote until "
                  "session.get_lfp(probe_id) is called")

        _say("cache.prefetch()  — download and verify every file of this version")
        report = cache.prefetch(progress=False)
        print(f"  {report.summary()}")
        _tree(cache_dir, f"{PROJECT_NAME}-{manifests[0].version}", limit=3)

        _say("cache.load_latest_manifest(); cache.prefetch()  — switch to the latest version")
        counter.clear()
        cache.load_latest_manifest()
        plan = cache.cache.plan_prefetch()
        print(f"  plan: {plan.summary()}")
        report = cache.prefetch(progress=False)
        print(f"  {report.summary()}")
        print(f"  only what changed crossed the wire: {_human(report.bytes_fetched)} in {counter.stats.gets()} "
              f"GET requests; {len(report.reused)} unchanged or renamed files were linked to blobs already "
              "in the cache (relative links, so the cache directory can be moved or copied)")

        _say(f"print(cache.compare_manifests(<{manifests[0].version}>, <{manifests[-1].version}>))")
        print(cache.compare_manifests(manifests[0].name, manifests[-1].name))

        _say("Offline: ProjectCache.from_local_cache(cache_dir) needs no network")
        offline = ProjectCache.from_local_cache(cache_dir, progress=False)
        print(f"  current manifest: {offline.current_manifest()}; "
              f"{len(offline.get_ecephys_session_table(filter_abnormalities=False))} ecephys sessions")
    print("\nDone. The cache directory is the index: blobs/ holds each content once, verified and read-only;")
    print("<project>-<version>/ holds the familiar paths as relative links.")
    if temporary:
        print(f"The demo's cache was in a temporary directory ({cache_dir}) and is removed now; to keep it and "
              "explore it, run: make demo DEMO_DIR=/some/dir  (or python -m tests.support.demo --workdir /some/dir)")
    else:
        print(f"Explore it: {cache_dir}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="keep the cache here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="releasecache-demo-") as tmp:
            run(Path(tmp), temporary=True)


if __name__ == "__main__":
    main()
