"""Time and peak memory of the row diff on the full-scale units table (≈319,000 rows × 36 columns).

    .venv/bin/python -m bench.audit_rows [WORKDIR]

Writes the two versions with ``tests.support.fixtures.fullscale_update`` once,
then runs each method in a fresh process (so peak RSS is that method's own):

* ``releasecache``: :func:`releasecache.audit.diff_tables` (id columns first, then
  shared columns a few at a time, compared column by column with Arrow);
* ``pandas``: the obvious approach: both CSVs with ``pandas.read_csv``, aligned on
  the id, compared with ``DataFrame.compare``-style masks.

Prints one JSON line per method: seconds (median of 3) and peak RSS in MiB,
plus the interpreter-and-imports baseline.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time

def hwm():  # peak RSS of this process image (ru_maxrss would include the parent's before exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

method, old, new = sys.argv[1:4]
import numpy as np, pandas as pd, pyarrow, pyarrow.csv
from releasecache.audit import diff_tables
base = hwm()
t0 = time.perf_counter()
if method == "releasecache":
    d = diff_tables(old, new, name="units")
    summary = [len(d.added), len(d.removed), len(d.changed), sorted(d.column_changes), d.columns_added, d.dtype_changes]
elif method == "pandas":
    a = pd.read_csv(old, index_col="unit_id"); b = pd.read_csv(new, index_col="unit_id")
    common = a.index.intersection(b.index)
    shared = [c for c in b.columns if c in a.columns]
    x, y = a.loc[common, shared], b.loc[common, shared]
    differs = (x != y) & ~(x.isna() & y.isna())
    summary = [len(b.index.difference(a.index)), len(a.index.difference(b.index)), int(differs.any(axis=1).sum()),
               sorted(differs.columns[differs.any()]), [c for c in b.columns if c not in a.columns],
               {c: (str(a[c].dtype), str(b[c].dtype)) for c in shared if a[c].dtype != b[c].dtype}]
elif method == "baseline":
    summary = []
seconds = time.perf_counter() - t0
peak = hwm()
print(json.dumps({"method": method, "seconds": seconds, "peak_rss_mib": peak / 1024,
                  "imports_rss_mib": base / 1024, "summary": summary}))
"""


def run(method: str, old: Path, new: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, method, str(old), str(new)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    from tests.support.fixtures.fullscale_update import write_units_update

    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="audit-rows-"))
    update = write_units_update(work)
    print(json.dumps({"rows_old": update.rows_old, "rows_new": update.rows_new,
                      "csv_bytes": [update.old.stat().st_size, update.new.stat().st_size]}))
    for method in ("baseline", "releasecache", "pandas"):
        runs = [run(method, update.old, update.new) for _ in range(3)]
        best = runs[-1]
        best["seconds"] = statistics.median(r["seconds"] for r in runs)
        best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
        print(json.dumps(best))


if __name__ == "__main__":
    main()
