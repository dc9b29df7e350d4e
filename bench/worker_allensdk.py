"""AllenSDK 2.16.2 side of the benchmark; runs in AllenSDK's own virtual environment.

VisualBehaviorNeuropixelsProjectCache.from_s3_cache creates a plain anonymous boto3
client; it is pointed at the loopback endpoint by the AWS_ENDPOINT_URL environment
variable (set by the caller), which boto3 honours.

Every ListObjectVersions call (AllenSDK makes one per downloaded file, to size its
progress bar) is timed by wrapping botocore's dispatcher, without changing what it
does, so its cost can be reported and taken out.

Usage: python worker_allensdk.py '<json request>'   (prints one JSON line)
"""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings

T_START = time.perf_counter()


class OpTimer:
    """Seconds spent in each S3 operation (wall time of the call, response included)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def install(self) -> None:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        timer = self

        def timed(client, operation_name, api_params):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return original(client, operation_name, api_params)
            finally:
                timer.seconds[operation_name] = timer.seconds.get(operation_name, 0.0) + time.perf_counter() - t
                timer.calls[operation_name] = timer.calls.get(operation_name, 0) + 1

        BaseClient._make_api_call = timed


def open_cache(req: dict):
    from allensdk.brain_observatory.behavior.behavior_project_cache.behavior_neuropixels_project_cache import (
        VisualBehaviorNeuropixelsProjectCache,
    )

    return VisualBehaviorNeuropixelsProjectCache.from_s3_cache(req["cache_dir"],
                                                               bucket_name_override=req.get("bucket"))


def action_download(req: dict, timer: OpTimer) -> dict:
    """W2: open the cache (AllenSDK downloads and reads the 5 metadata tables here), then
    download_data for every data file of the manifest, one after the other."""
    t0 = time.perf_counter()
    cache = open_cache(req)
    t_open = time.perf_counter()
    s3cache = cache.fetch_api.cache
    ids = req.get("file_ids") or list(s3cache._manifest.file_id_values)
    for fid in ids:
        s3cache.download_data(str(fid))
    t1 = time.perf_counter()
    return {"seconds": t1 - t0, "open_seconds": t_open - t0, "files": len(ids),
            "list_versions_seconds": timer.seconds.get("ListObjectVersions", 0.0),
            "list_versions_calls": timer.calls.get("ListObjectVersions", 0),
            "op_seconds": timer.seconds, "op_calls": timer.calls}


def action_hits(req: dict, timer: OpTimer) -> dict:
    """W6 reference: download_data latency for a file already downloaded."""
    cache = open_cache(req)
    s3cache = cache.fetch_api.cache
    fid = str(req["file_id"])
    s3cache.download_data(fid)
    for _ in range(100):
        s3cache.download_data(fid)
    n = req.get("calls", 2000)
    clock = time.perf_counter_ns
    times = []
    for _ in range(n):
        a = clock()
        s3cache.download_data(fid)
        times.append(clock() - a)
    times.sort()
    return {"calls": n, "median_us": times[n // 2] / 1000, "p90_us": times[int(n * 0.9)] / 1000,
            "p99_us": times[int(n * 0.99)] / 1000}


def action_warm(req: dict, timer: OpTimer) -> dict:
    """W4 reference: from_s3_cache (reads every metadata table) + get_unit_table(), tables cached."""
    t0 = time.perf_counter()
    cache = open_cache(req)
    t_built = time.perf_counter()
    units = cache.get_unit_table()
    t1 = time.perf_counter()
    return {"seconds": t1 - t0, "construct_seconds": t_built - t0, "table_seconds": t1 - t_built,
            "rows": int(len(units)), "columns": int(units.shape[1]), "op_calls": timer.calls}


ACTIONS = {"download": action_download, "hits": action_hits, "warm": action_warm}


def main() -> None:
    req = json.loads(sys.argv[1])
    t_imp = time.perf_counter()
    import allensdk
    from allensdk.brain_observatory.behavior.behavior_project_cache import (  # noqa: F401
        behavior_neuropixels_project_cache,
    )

    import_seconds = time.perf_counter() - t_imp
    timer = OpTimer()
    timer.install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ACTIONS[req["action"]](req, timer)
    out["import_seconds"] = import_seconds
    out["allensdk_version"] = allensdk.__version__
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["process_seconds_so_far"] = time.perf_counter() - T_START
    print(json.dumps(out))


if __name__ == "__main__":
    main()
