"""W9 scale: one release size per process; times manifest load + validation, compare_manifests,
prefetch planning, fast verify and gc of a fully populated cache, and cache-hit latency.

The release (``n`` data files of a few bytes each, VBN-format manifests of two versions with 1% of
the files changed) is written to a local mirror and prefetched into a cache once (not timed; kept
for later runs while its spec is unchanged).

Usage: python worker_scale.py '{"n": 100000, "dir": "...", "reps": 3}'   (prints one JSON line)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

PROJECT = "bench-scale"
BUCKET = "bench-scale-data"
VERSIONS = ("1.0.0", "1.1.0")


def _name(version: str) -> str:
    return f"{PROJECT}_project_manifest_v{version}.json"


def build(root: Path, n: int) -> None:
    """Mirror with both versions' files and manifests (1% of the files differ in 1.1.0)."""
    mirror = root / "mirror"
    shutil.rmtree(mirror, ignore_errors=True)
    changed = set(range(0, n, 100))
    docs = {}
    for version in VERSIONS:
        data = {}
        for i in range(n):
            tag = f"{version}" if (version != VERSIONS[0] and i in changed) else VERSIONS[0]
            key = f"{PROJECT}/sessions/{i // 1000:04d}/file_{i:06d}.dat"
            body = f"{i}:{tag}\n".encode() * 4
            path = mirror / key
            if version == VERSIONS[0]:  # the mirror serves the first version; the second is only compared
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
            digest = hashlib.blake2b(body).hexdigest()
            data[str(i)] = {"url": f"https://{BUCKET}.s3.us-west-2.amazonaws.com/{key}",
                            "version_id": "v" + digest[:31], "file_hash": digest}
        meta_key = f"{PROJECT}/project_metadata/files.csv"
        meta = mirror / meta_key
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text("id,file_id\n0,0\n")
        mdigest = hashlib.blake2b(meta.read_bytes()).hexdigest()
        docs[version] = {"project_name": PROJECT, "manifest_version": version, "metadata_file_id_column_name": "file_id",
                         "data_pipeline": [{"name": "AllenSDK", "version": "2.16.2", "comment": "scale benchmark"}],
                         "metadata_files": {"files": {"url": f"https://{BUCKET}.s3.us-west-2.amazonaws.com/{meta_key}",
                                                      "version_id": "v" + mdigest[:31], "file_hash": mdigest}},
                         "data_files": data}
    folder = mirror / PROJECT / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    for version, doc in docs.items():
        (folder / _name(version)).write_text(json.dumps(doc, indent=1))


def timed(fn, reps: int) -> tuple[list[float], object]:
    """Median-ready times of ``reps`` calls after one untimed call (warm inode and page caches)."""
    out = fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def main() -> None:
    req = json.loads(sys.argv[1])
    n, root, reps = int(req["n"]), Path(req["dir"]), int(req.get("reps", 3))
    from releasecache import CloudCache, Manifest, compare_manifests

    stamp = root / "stamp.json"
    spec = {"v": 2, "n": n}
    result: dict = {"n": n}
    cache_dir = root / "cache"
    try:
        ok = json.loads(stamp.read_text()) == spec
    except (OSError, ValueError):
        ok = False
    if not ok:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        t = time.perf_counter()
        build(root, n)
        result["build_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        cache = CloudCache.from_mirror(cache_dir, root / "mirror", PROJECT, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cache.load_manifest(_name(VERSIONS[0]))
        rep = cache.prefetch(progress=False, max_files=8)
        if rep.failed:
            raise SystemExit(f"populating the cache failed for {len(rep.failed)} files")
        result["populate_seconds"] = time.perf_counter() - t
        stamp.write_text(json.dumps(spec))
    folder = root / "mirror" / PROJECT / "manifests"
    p1, p2 = folder / _name(VERSIONS[0]), folder / _name(VERSIONS[1])
    seconds: dict[str, list[float]] = {}
    seconds["manifest load + validation"], m1 = timed(lambda: Manifest.from_path(p1), reps)
    m2 = Manifest.from_path(p2)
    seconds["compare_manifests"], diff = timed(lambda: compare_manifests(m1, m2), reps)
    result["changed"] = len(diff.changed)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache = CloudCache.from_mirror(cache_dir, root / "mirror", PROJECT, progress=False)
        cache.load_manifest(_name(VERSIONS[0]))
        empty_dir = root / "empty-cache"
        shutil.rmtree(empty_dir, ignore_errors=True)
        empty = CloudCache.from_mirror(empty_dir, root / "mirror", PROJECT, progress=False)
        empty.load_manifest(_name(VERSIONS[0]))
    seconds["prefetch planning (empty cache)"], _ = timed(lambda: empty.plan_prefetch(), reps)
    seconds["prefetch planning (populated)"], _ = timed(lambda: cache.plan_prefetch(), reps)
    seconds["fast verify (populated)"], vr = timed(lambda: cache.verify(mode="fast"), reps)
    result["verify_ok"] = bool(vr.ok)
    # window_days=0: the first version was loaded a moment ago, so gc's default usage window (30 days)
    # would keep it and the dry run would find nothing to delete; without it the blobs only the first
    # version references (1% of the files) are what goes.
    seconds["gc dry run, keep the next version"], gr = timed(
        lambda: cache.gc(keep=[_name(VERSIONS[1])], dry_run=True, window_days=0), reps)
    result["gc_would_delete_blobs"] = len(gr.deleted_blobs)
    result["gc_expected_blobs"] = len(diff.changed)
    result["verify_problems"] = {"corrupt": len(vr.corrupt), "missing": len(vr.missing),
                                 "permissions": len(vr.permissions), "hashed": vr.hashed}
    fid = str(n // 2)
    cache.download_data(fid)
    clock = time.perf_counter_ns
    hits = []
    for _ in range(2000):
        a = clock()
        cache.download_data(fid)
        hits.append(clock() - a)
    hits.sort()
    result["hit_median_us"] = hits[len(hits) // 2] / 1000
    result["hit_p99_us"] = hits[int(len(hits) * 0.99)] / 1000
    result["seconds"] = seconds
    result["medians"] = {k: statistics.median(v) for k, v in seconds.items()}
    shutil.rmtree(empty_dir, ignore_errors=True)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
