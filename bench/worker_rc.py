"""releasecache side of the benchmark: one action per process, one JSON line on stdout.

Usage: python worker_rc.py '<json request>'

Times are taken inside the process with time.perf_counter(), from the first
releasecache call (after imports: releasecache and the transport it will use,
boto3 or requests) to the end of the action; the import time is reported
separately, and the caller records the whole process's wall time too.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings

T_START = time.perf_counter()


def rss_now_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_cache(req: dict):
    from releasecache import CloudCache, TransferConfig

    config = TransferConfig(**req.get("transfer", {}))
    if req["remote"] == "http":
        return CloudCache.from_http(req["cache_dir"], f"{req['endpoint']}/{req['bucket']}", req["project"],
                                    transfer_config=config, progress=False)
    return CloudCache.from_s3(req["cache_dir"], req["bucket"], req["project"], endpoint_url=req["endpoint"],
                              transfer_config=config, progress=False)


def action_bulk(req: dict) -> dict:
    """Construct the cache, load a manifest, prefetch (everything or the given file ids)."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    cache = make_cache(req)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache.load_manifest(req["manifest"])
    t_loaded = time.perf_counter()
    options = {"max_files": req["max_files"]} if req.get("max_files") else {}  # else the library's default
    report = cache.prefetch(req.get("file_ids"), metadata=req.get("metadata", True), progress=False, **options)
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out = {"seconds": t1 - t0, "load_seconds": t_loaded - t0, "prefetch_seconds": t1 - t_loaded,
           "cpu_seconds": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
           "fetched": len(report.fetched), "reused": len(report.reused), "present": len(report.present),
           "failed": report.failed, "bytes_fetched": report.bytes_fetched, "transfer_stats": dict(cache.transfer.stats)}
    limiter = getattr(cache.transfer, "limiter", None)
    if limiter is not None:  # adaptive parts in flight: what it settled on, and how it got there
        out["parts_in_flight"] = {"peak": limiter.peak, "final_limit": limiter.limit,
                                  "history": [(round(t - t0, 3), n, round(r / 1e6, 1)) for t, n, r in limiter.history]}
    cache.transfer.close()
    return out


def action_one(req: dict) -> dict:
    """W5: fetch one (large) file; report the peak RSS against the RSS after imports."""
    import releasecache  # noqa: F401

    base_rss = rss_now_mb()
    base_peak = peak_rss_mb()
    t0 = time.perf_counter()
    cache = make_cache(req)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache.load_manifest(req["manifest"])
    path = cache.download_data(req["file_id"])
    t1 = time.perf_counter()
    return {"seconds": t1 - t0, "rss_after_imports_mb": base_rss, "peak_before_fetch_mb": base_peak,
            "peak_rss_mb": peak_rss_mb(), "size": path.stat().st_size, "transfer_stats": dict(cache.transfer.stats)}


def action_hits(req: dict) -> dict:
    """W6: latency of download_data for a file already in the cache."""
    cache = make_cache(req)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache.load_manifest(req["manifest"])
    fid = req["file_id"]
    first = cache.download_data(fid)  # make sure it is present (not timed)
    for _ in range(200):  # warm up
        cache.download_data(fid)
    n = req.get("calls", 10000)
    times = []
    clock = time.perf_counter_ns
    for _ in range(n):
        a = clock()
        cache.download_data(fid)
        times.append(clock() - a)
    times.sort()
    path_times = []
    for _ in range(min(n, 2000)):
        a = clock()
        cache.data_path(fid)
        path_times.append(clock() - a)
    path_times.sort()
    return {"calls": n, "median_us": times[n // 2] / 1000, "p90_us": times[int(n * 0.9)] / 1000,
            "p99_us": times[int(n * 0.99)] / 1000, "min_us": times[0] / 1000,
            "data_path_median_us": path_times[len(path_times) // 2] / 1000, "path": str(first)}


def action_warm(req: dict) -> dict:
    """W4: ProjectCache.from_s3 + get_unit_table() in a fresh process (tables already cached)."""
    t_imp = time.perf_counter()
    try:
        from releasecache import ProjectCache
    except Exception as exc:  # the facade may not exist yet
        return {"unavailable": f"cannot import ProjectCache: {type(exc).__name__}: {exc}"}
    t_imported = time.perf_counter()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache = ProjectCache.from_s3(req["cache_dir"], bucket=req["bucket"], project=req["project"],
                                     endpoint_url=req["endpoint"], progress=False)
        t_built = time.perf_counter()
        units = cache.get_unit_table()
    t1 = time.perf_counter()
    return {"seconds": t1 - t0, "construct_seconds": t_built - t0, "table_seconds": t1 - t_built,
            "facade_import_seconds": t_imported - t_imp, "rows": int(len(units)), "columns": int(units.shape[1])}


def action_stream(req: dict) -> dict:
    """W8: a session NWB opened with stream=True; time to get_units() + trials + stimulus_presentations."""
    from releasecache import ProjectCache

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache = ProjectCache.from_s3(req["cache_dir"], bucket=req["bucket"], project=req["project"],
                                     endpoint_url=req["endpoint"], progress=False)
        t_built = time.perf_counter()
        session = cache.get_ecephys_session(req["ecephys_session_id"], stream=True)
        units = session.get_units()
        trials = session.trials
        stim = session.stimulus_presentations
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    stream = getattr(session, "stream", None)
    out = {"seconds": t1 - t_built, "construct_seconds": t_built - t0, "with_construct_seconds": t1 - t0,
           "cpu_seconds": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
           "units": int(len(units)), "trials": int(len(trials)), "stimulus_rows": int(len(stim)),
           "stream_requests": getattr(stream, "requests", None), "stream_bytes": getattr(stream, "bytes_read", None),
           "streamed": bool(getattr(session, "streamed", False))}
    session.close()
    return out


ACTIONS = {"stream": action_stream, "bulk": action_bulk, "one": action_one, "hits": action_hits, "warm": action_warm}


def main() -> None:
    req = json.loads(sys.argv[1])
    t_imp0 = time.perf_counter()
    import releasecache  # noqa: F401  (timed: what every user process pays once)

    # releasecache imports its transport lazily; import it here so that, as for every other
    # contender, imports stay outside the timed region (they are reported in import_seconds).
    # Not for W4 ("warm"): it times the whole process, and what a warm start must import is
    # part of what it measures (a warm start lists manifests without boto3).
    if req["action"] == "warm":
        pass
    elif req.get("remote", "s3") == "s3":
        import boto3  # noqa: F401
        import botocore.client  # noqa: F401
    else:
        import requests  # noqa: F401
    import_seconds = time.perf_counter() - t_imp0
    out = ACTIONS[req["action"]](req)
    out.setdefault("import_seconds", import_seconds)
    out["process_seconds_so_far"] = time.perf_counter() - T_START
    out["peak_rss_mb"] = out.get("peak_rss_mb", peak_rss_mb())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
