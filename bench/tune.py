"""Sweep TransferConfig and prefetch(max_files=...) on the W1 data (HTTP, nginx) and on one large file.

Run: ``BENCH_TUNE=1 make bench`` (before the suite) or ``.venv/bin/python bench/tune.py``;
``BENCH_TUNE_SETTINGS="defaults,4 MiB"`` keeps only the settings whose names contain one of
those words, ``BENCH_TUNE_W1_ONLY=1`` skips the one-large-file sweep.
Each setting runs in a fresh process, settings alternate, ``BENCH_TUNE_REPS`` repetitions
(default 3); medians of wall time, CPU time and peak RSS are printed and written to
``bench/results/tune-<timestamp>.json``. Compare settings within one run only.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import datagen  # noqa: E402
import suite  # noqa: E402

MiB = datagen.MiB

SETTINGS: list[tuple[str, dict, int | None]] = [
    ("defaults (8 MiB parts, 8 in flight, window 10, 4 files)", {}, None),
    ("4 MiB parts, window 16", {"part_size": 4 * MiB, "window": 16}, None),
    ("16 MiB parts, window 6", {"part_size": 16 * MiB, "window": 6}, None),
    ("4 in flight, window 6", {"max_parts_in_flight": 4, "window": 6}, None),
    ("16 in flight, window 20", {"max_parts_in_flight": 16, "window": 20}, None),
    ("8 in flight, window 8", {"window": 8}, None),
    ("2 files at once", {}, 2),
    ("8 files at once", {}, 8),
]


def main() -> int:
    reps = int(os.environ.get("BENCH_TUNE_REPS", "3"))
    # BENCH_TUNE_SETTINGS="defaults,4 MiB": only settings whose name contains one of these
    wanted = [w.strip() for w in os.environ.get("BENCH_TUNE_SETTINGS", "").split(",") if w.strip()]
    settings = [s for s in SETTINGS if not wanted or any(w in s[0] for w in wanted)]
    only_w1 = os.environ.get("BENCH_TUNE_W1_ONLY", "") not in ("", "0")
    s = suite.SIZES["w1"]
    bench = suite.Suite()
    data = datagen.http_bulk(suite.WORK, **s)
    one = datagen.one_big_file(suite.WORK, suite.SIZES["w5"]["size"])
    ng = bench.start_nginx()
    results: dict = {"timestamp": bench.results["timestamp"], "quick": suite.QUICK, "reps": reps,
                     "w1_bytes": data["bytes"], "one_bytes": one["bytes"], "settings": {}}
    try:
        for workload, d in (("W1 bulk", data), ("one large file", one))[:1 if only_w1 else 2]:
            runs: dict[str, list[dict]] = {name: [] for name, _, _ in settings}
            for rep in range(reps):
                order = settings[rep % len(settings):] + settings[:rep % len(settings)]
                for name, transfer, max_files in order:
                    dest = bench.fresh_dir("tune-dest")
                    bench.cache.cold(d["paths"])
                    req = {"action": "bulk", "remote": "http", "endpoint": ng.url, "bucket": d["bucket"],
                           "project": d["project"], "manifest": d["manifest"], "cache_dir": str(dest),
                           "transfer": transfer, "cpu": True}
                    if max_files:
                        req["max_files"] = max_files
                    t = time.perf_counter()
                    out = bench.rc("tune", req)
                    out["load1"] = os.getloadavg()[0]
                    runs[name].append(out)
                    suite.log(f"tune {workload} rep {rep + 1}: {name}: {out.get('seconds', float('nan')):.2f} s, "
                              f"cpu {out.get('cpu_seconds', float('nan')):.2f} s, "
                              f"rss {out.get('peak_rss_mb', float('nan')):.0f} MB"
                              + (f" ({out['error']})" if out.get("error") else "")
                              + f" [{time.perf_counter() - t:.1f} s]")
            results["settings"][workload] = runs
        bench.fresh_dir("tune-dest")
    finally:
        bench.stop()
    print()
    for workload, runs in results["settings"].items():
        nbytes = results["w1_bytes"] if workload == "W1 bulk" else results["one_bytes"]
        print(f"{workload}: median of {reps}")
        print(f"  {'setting':58s} {'wall':>8s} {'MB/s':>6s} {'cpu':>7s} {'rss':>7s}")
        for name, rr in runs.items():
            ok = [r for r in rr if not r.get("error")]
            if not ok:
                print(f"  {name:58s} failed")
                continue
            wall = statistics.median(r["seconds"] for r in ok)
            cpu = statistics.median(r.get("cpu_seconds", float("nan")) for r in ok)
            rss = statistics.median(r["peak_rss_mb"] for r in ok)
            print(f"  {name:58s} {wall:7.2f}s {nbytes / wall / 1e6:6.0f} {cpu:6.2f}s {rss:5.0f}MB")
    out_path = HERE / "results" / f"tune-{results['timestamp'].replace(':', '').replace('-', '')}.json"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1, default=str))
    suite.log(f"tuning results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
