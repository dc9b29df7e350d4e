"""Turn raw runs into the summary table (medians, ratios, targets) and docs/performance.md."""

from __future__ import annotations

import statistics
from pathlib import Path

BEGIN = "<!-- BEGIN GENERATED: bench/report.py writes everything down to END GENERATED -->"
END = "<!-- END GENERATED -->"


def _ok(runs: list[dict]) -> list[dict]:
    return [r for r in runs if not r.get("error") and not r.get("unavailable")]


def _med(runs: list[dict], key: str = "seconds") -> float | None:
    values = [r[key] for r in _ok(runs) if isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def _err(runs: list[dict]) -> str:
    for r in runs:
        if r.get("error") or r.get("unavailable"):
            return str(r.get("error") or r.get("unavailable"))
    return "no result"


def _s(x: float | None) -> str:
    return "—" if x is None else (f"{x:.2f} s" if x < 100 else f"{x:.0f} s")


def _mbps(nbytes: int | None, secs: float | None) -> str:
    if not nbytes or not secs:
        return ""
    return f"{nbytes / secs / 1e6:.0f} MB/s"


def _n(runs: list[dict]) -> str:
    ok = len(_ok(runs))
    return f"n={ok}" + (f" ({len(runs) - ok} failed)" if ok < len(runs) else "")


def row(workload: str, contender: str, value: str, ratio: str = "", target: str = "", met: bool | None = None,
        note: str = "") -> dict:
    return {"workload": workload, "contender": contender, "value": value, "ratio": ratio, "target": target,
            "met": met, "note": note}


def summarize(results: dict) -> list[dict]:
    w = results.get("workloads", {})
    rows: list[dict] = []
    for key in WORKLOADS:
        data = w.get(key)
        if data is None:
            continue
        if data.get("unavailable"):
            rows.append(row(key, "—", "not available", note=data["unavailable"]))
            continue
        fn = globals().get(f"_{key.lower()}") or _by_profile_rows
        rows.extend(fn(data) if fn is not _by_profile_rows else fn(key, data))
        for shaped, d in w.items():  # the same workload through the shaper: "W2 laptop", ...
            if shaped.startswith(key + " ") and key in ("W2", "W3"):
                rows.extend(globals()[f"_{key.lower()}"](d, label=shaped) if not d.get("unavailable") else
                            [row(shaped, "—", "not available", note=d["unavailable"])])
    return rows


WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W7b", "W8", "W9")


def _w8(d: dict) -> list[dict]:
    """W8: releasecache >= 2x faster than the better of remfile and fsspec, with fewer requests than either."""
    out = []
    for prof, pd in d.get("by_profile", {}).items():
        runs = pd["runs"]
        wl = f"W8 {prof}"
        meds = {n: _med(rr) for n, rr in runs.items()}

        def gets(rr: list[dict], kinds: tuple[str, ...] = ("get", "ranged_get", "head")) -> float | None:
            # a HEAD costs a round trip like a GET: requests to the file, whatever their method
            vals = [sum(r["server"][k] for k in kinds) for r in _ok(rr) if r.get("server")]
            return statistics.median(vals) if vals else None

        def mb(rr: list[dict]) -> float | None:
            vals = [r["server"]["body_bytes"] / 1e6 for r in _ok(rr) if r.get("server")]
            return statistics.median(vals) if vals else None

        rc_name = next((n for n in runs if n.startswith("releasecache")), None)
        refs = {n: m for n, m in meds.items() if m is not None and n != rc_name}
        best = min(refs, key=refs.get) if refs else None
        for name, rr in runs.items():
            m = meds[name]
            if m is None:
                out.append(row(wl, name, "failed", note=_err(rr)))
                continue
            g, b = gets(rr), mb(rr)
            heads = gets(rr, ("head",))
            note = (f"{g:.0f} requests to the file ({g - heads:.0f} GETs, {heads:.0f} HEAD), {b:.1f} MB read"
                    if g is not None and heads is not None and b is not None else "")
            note += f", {_n(rr)}"
            ratio, target, met = "", "", None
            if name == rc_name and best:
                ratio = f"{refs[best] / m:.2f}× {best}"
                target = "≥ 2× the better reference, fewer requests than either"
                ref_requests = [gets(runs[n]) for n in refs]
                met = (refs[best] / m >= 2 and g is not None and None not in ref_requests
                       and all(g < r for r in ref_requests))
                note += f"; with from_s3 {_s(_med(rr, 'with_construct_seconds'))}; not hash-verified (streamed)"
            out.append(row(wl, name, _s(m), ratio, target, met, note))
    return out


def _w9(d: dict) -> list[dict]:
    """W9: every operation grows at most linearly; 100k manifest < 1 s, fast verify of 100k < 10 s."""
    out = []
    by = {int(k): v for k, v in d.get("by_files", {}).items()}
    ok = {n: r for n, r in by.items() if not r.get("error")}
    for n, r in sorted(by.items()):
        if r.get("error"):
            out.append(row("W9", f"{n} files", "failed", note=r["error"]))
    if not ok:
        return out
    ns = sorted(ok)
    ops = list(ok[ns[0]].get("medians", {}))
    for op in ops:
        prev = None
        for n in ns:
            m = ok[n]["medians"].get(op)
            if m is None:
                continue
            growth, target, met = "", "", None
            if prev is not None and prev[1] > 0:
                pn, pm = prev
                growth = f"{m / pm:.1f}× the {pn}-file time for {n / pn:.1f}× the files"
                if n == ns[-1]:  # judged on the largest step, where fixed costs and noise matter least
                    target, met = "≤ linear growth", (m / pm) / (n / pn) <= 1.25
            if n == 100000 and op == "manifest load + validation":
                target, met = "< 1 s" + (", ≤ linear" if met is not None else ""), m < 1.0 and met is not False
            if n == 100000 and op == "fast verify (populated)":
                target, met = "< 10 s" + (", ≤ linear" if met is not None else ""), m < 10.0 and met is not False
            note = ""
            if op.startswith("gc dry run") and "gc_expected_blobs" in ok[n]:
                note = (f"would delete {ok[n].get('gc_would_delete_blobs')} blobs; "
                        f"{ok[n]['gc_expected_blobs']} are referenced only by the version not kept")
            if op.startswith("fast verify") and ok[n].get("verify_problems"):
                vp = ok[n]["verify_problems"]
                note = ", ".join(f"{k} {v}" for k, v in vp.items())
            out.append(row("W9", f"{op}, {n} files", _s(m) if m >= 0.01 else f"{m * 1000:.1f} ms", growth, target,
                           met, note))
            prev = (n, m)
    for n in ns:
        r = ok[n]
        note = f"p99 {r.get('hit_p99_us', 0):.0f} µs"
        if r.get("populate_seconds"):
            note += f"; populating the cache took {r['populate_seconds']:.0f} s (setup, kept for later runs)"
        out.append(row("W9", f"cache hit (download_data), {n} files", f"{r.get('hit_median_us', 0):.0f} µs", "",
                       "< 1 ms", r.get("hit_median_us", 1e9) < 1000, note))
    return out


def _cpu(runs: list[dict]) -> float | None:
    vals = [r.get("process_cpu_seconds") for r in _ok(runs)]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def _by_profile_rows(key: str, d: dict) -> list[dict]:
    """W7 / W7b: per profile, every contender with MB/s, CPU seconds and ratios.

    Target: releasecache (verified) >= 1.0x the fastest reference, and >= 8x AllenSDK cross-region.
    """
    out = []
    for prof, pd in d.get("by_profile", {}).items():
        runs = pd["runs"]
        wl = f"{key} {prof}"
        meds = {n: _med(rr) for n, rr in runs.items()}
        refs = {n: m for n, m in meds.items() if m is not None and not n.startswith("releasecache")
                and not n.startswith("AllenSDK")}
        fastest = min(refs, key=refs.get) if refs else None
        rc = meds.get("releasecache")
        sdk_runs = runs.get("AllenSDK 2.16.2", [])
        sdk = _med(sdk_runs, "seconds_without_list_versions") or _med(sdk_runs)
        order = sorted(runs, key=lambda n: (not n.startswith("releasecache"), meds.get(n) or 1e9))
        for name in order:
            rr = runs[name]
            m = meds[name]
            if m is None:
                out.append(row(wl, name, "failed", note=_err(rr)))
                continue
            cpu = _cpu(rr)
            note = f"{_mbps(d['bytes'], m)}, {_n(rr)}"
            if cpu is not None:
                note += f", {cpu:.1f} CPU-s"
            dm = _med(rr, "durable_seconds")
            if dm is not None and name != "releasecache":
                note += f"; + sync {_s(dm)}"
            ratio, target, met = "", "", None
            if name == "releasecache" and fastest:
                ratio = f"{refs[fastest] / m:.2f}× {fastest}"
                target = "≥ 1.0× fastest reference"
                met = refs[fastest] / m >= 1.0
                if sdk and prof == "cross-region":
                    ratio += f"; {sdk / m:.1f}× AllenSDK"
                    target += ", ≥ 8× AllenSDK"
                    met = met and sdk / m >= 8
                note += "; verified (blake2b), fsynced"
            elif rc:
                ratio = f"{m / rc:.2f}× releasecache's time"
            out.append(row(wl, name, _s(m), ratio, target, met, note))
    return out


def _w1(d: dict) -> list[dict]:
    runs = d["runs"]
    ref_name = "aria2c -x8 -j8"
    ref = _med(runs.get(ref_name, []))
    out = []
    for name, rr in runs.items():
        m = _med(rr)
        if m is None:
            out.append(row("W1", name, "failed", note=_err(rr)))
            continue
        ratio = f"{ref / m:.2f}× aria2c" if ref and name != ref_name else ("1.00" if name == ref_name else "")
        note = f"{_mbps(d['bytes'], m)}, {_n(rr)}"
        target, met = "", None
        dm = _med(rr, "durable_seconds")
        if dm is not None:
            note += f"; until on disk (+ sync) {_s(dm)}"
        if name.startswith("releasecache"):
            pm = _med(rr, "process_seconds")
            note += f"; hash-verified, fsynced; whole process incl. imports {_s(pm)}"
            if ref and pm:
                note += f" ({ref / pm:.2f}× aria2c)"
            if name == "releasecache":
                target, met = "≥ 1.0× aria2c", (ref is not None and ref / m >= 1.0)
        out.append(row("W1", name, _s(m), ratio, target, met, note))
    rc_d = _med(runs.get("releasecache", []), "durable_seconds")
    ref_d = _med(runs.get(ref_name, []), "durable_seconds")
    if rc_d and ref_d:
        out.append(row("W1", "releasecache, until the data is on disk", _s(rc_d), f"{ref_d / rc_d:.2f}× aria2c",
                       "≥ 1.0× aria2c", ref_d / rc_d >= 1.0,
                       f"every contender followed by sync (aria2c {_s(ref_d)}); releasecache fsyncs each blob "
                       "before publishing it, the references leave dirty pages"))
    return out


def _w2(d: dict, label: str = "W2") -> list[dict]:
    runs = d["runs"]
    rc = _med(runs.get("releasecache", []))
    sdk_runs = runs.get("AllenSDK 2.16.2", [])
    sdk = _med(sdk_runs)
    sdk_adj = _med(sdk_runs, "seconds_without_list_versions")
    out = []
    if rc is None:
        out.append(row(label, "releasecache", "failed", note=_err(runs.get("releasecache", []))))
    else:
        honest = sdk_adj / rc if (sdk_adj and rc) else None
        ratio = (f"{sdk / rc:.2f}× faster than AllenSDK as measured; {honest:.2f}× without its "
                 f"ListObjectVersions calls") if honest else ""
        out.append(row(label, "releasecache", _s(rc), ratio, "≥ 3× AllenSDK (ListObjectVersions cost removed)",
                       honest is not None and honest >= 3.0,
                       f"{_mbps(d['bytes'], rc)}, hash-verified, fsynced, {_n(runs['releasecache'])}; "
                       f"whole process incl. imports {_s(_med(runs['releasecache'], 'process_seconds'))}"))
    if sdk is None:
        out.append(row(label, "AllenSDK 2.16.2", "failed", note=_err(sdk_runs)))
    else:
        lv = _med(sdk_runs, "list_versions_seconds")
        calls = _ok(sdk_runs)[0].get("list_versions_calls") if _ok(sdk_runs) else None
        out.append(row(label, "AllenSDK 2.16.2 (as measured)", _s(sdk), "1.00", note=(
            f"{_mbps(d['bytes'], sdk)}, {_n(sdk_runs)}; of which {_s(lv)} in {calls} ListObjectVersions calls; "
            f"hash-verified by re-reading each file, not fsynced (+ sync {_s(_med(sdk_runs, 'sync_seconds'))}); "
            f"whole process incl. imports {_s(_med(sdk_runs, 'process_seconds'))}")))
        out.append(row(label, "AllenSDK 2.16.2 (ListObjectVersions taken out)", _s(sdk_adj),
                       f"{sdk / sdk_adj:.2f}" if sdk_adj else "", note=_mbps(d["bytes"], sdk_adj)))
    b = runs.get("boto3 download_file", [])
    bm = _med(b)
    if bm is None:
        out.append(row(label, "boto3 download_file", "failed", note=_err(b)))
    else:
        out.append(row(label, "boto3 download_file", _s(bm), f"{sdk / bm:.2f}× faster than AllenSDK" if sdk else "",
                       note=f"{_mbps(d['bytes'], bm)}, verifies nothing, not fsynced (+ sync "
                            f"{_s(_med(b, 'sync_seconds'))}), {_n(b)}"))
    return out


def _w3(d: dict, label: str = "W3") -> list[dict]:
    runs = d["runs"]
    sw = runs.get("switch 1.0.0 -> 1.1.0", [])
    tr = runs.get("changed files only, empty cache", [])
    ms, mt = _med(sw), _med(tr)
    out = []
    if ms is None:
        out.append(row(label, "releasecache switch", "failed", note=_err(sw)))
        return out
    fetched = [r.get("transfer_stats", {}).get("bytes") for r in _ok(sw)]
    exact = bool(fetched) and all(f == d["changed_bytes"] for f in fetched)
    wire = [r.get("wire_bytes") for r in _ok(sw)]
    reused = _ok(sw)[0].get("reused") if _ok(sw) else None
    budget = (mt or 0.0) + 2.0
    out.append(row(label, "releasecache: bytes fetched", f"{fetched[0] if fetched else '—'} B", "",
                   f"= changed bytes ({d['changed_bytes']} B)", exact,
                   f"{d['changed_files']} of {d['files']} files changed; {reused} files relinked, not fetched; "
                   f"on the wire {wire[0] if wire else '—'} B incl. manifest and listing"))
    out.append(row(label, "releasecache: switch wall time", _s(ms), "", f"< 2 s + transfer ({_s(budget)})",
                   mt is not None and ms < budget,
                   f"overhead over fetching the changed files alone: {_s(ms - mt) if mt else '—'}; {_n(sw)}"))
    out.append(row(label, "releasecache: changed files only, empty cache", _s(mt), note=f"the transfer itself; {_n(tr)}"))
    return out


def _w4(d: dict) -> list[dict]:
    runs = d["runs"]
    rc = _med(runs.get("releasecache", []))
    sdk = _med(runs.get("AllenSDK 2.16.2", []))
    out = []
    first = d.get("first", {})
    for name, m in (("releasecache", rc), ("AllenSDK 2.16.2", sdk)):
        rr = runs.get(name, [])
        if m is None:
            out.append(row("W4", name, "failed", note=_err(rr)))
            continue
        ratio = f"{sdk / m:.2f}× faster than AllenSDK, after imports" if (name == "releasecache" and sdk) else ""
        f = first.get(name, {})
        note = (f"{d.get('rows')} units; {_n(rr)}; whole process incl. imports {_s(_med(rr, 'process_seconds'))}; "
                f"first (cold) open {_s(f.get('seconds'))}")
        if name == "releasecache":
            note += f"; from_s3 {_s(_med(rr, 'construct_seconds'))}, get_unit_table {_s(_med(rr, 'table_seconds'))}"
        else:
            note += f"; from_s3_cache reads all 5 tables: {_s(_med(rr, 'construct_seconds'))}"
        out.append(row("W4", name, _s(m), ratio, note=note))
    out.extend(_w4_whole_process(d))
    reload = d.get("reload")
    if reload:
        csv_m = statistics.median(reload["seconds"]["pandas.read_csv"])
        side_m = statistics.median(reload["seconds"]["sidecar reload"])
        speedup = csv_m / side_m if side_m else None
        n = len(reload["seconds"]["sidecar reload"])
        out.append(row("W4", "get_unit_table reload from the sidecar", _s(side_m),
                       f"{speedup:.1f}× faster than pandas.read_csv" if speedup else "", "≥ 10× read_csv",
                       speedup is not None and speedup >= 10,
                       f"same units.csv parsed by pandas.read_csv: {_s(csv_m)}; n={n}, alternating, warm page cache"))
    return out


def _w4_whole_process(d: dict) -> list[dict]:
    """The target row of W4: whole processes, imports included, page cache dropped and kept."""
    out = []
    for label, key in (("page cache dropped", "runs"), ("page cache warm", "runs_page_cache_warm")):
        runs = d.get(key) or {}
        rc = _med(runs.get("releasecache", []), "process_seconds")
        sdk = _med(runs.get("AllenSDK 2.16.2", []), "process_seconds")
        if rc is None or sdk is None:
            continue
        out.append(row("W4", f"releasecache whole process, {label}", _s(rc), f"{sdk / rc:.2f}× faster than AllenSDK",
                       "≥ 8× AllenSDK, imports included", sdk / rc >= 8,
                       f"AllenSDK 2.16.2 whole process {_s(sdk)}; {_n(runs['releasecache'])}"))
    return out


def _w5(d: dict) -> list[dict]:
    out = []
    for name, rr in d["runs"].items():
        ok = _ok(rr)
        if not ok:
            out.append(row("W5", name, "failed", note=_err(rr)))
            continue
        peak = ok[0].get("peak_rss_mb")
        is_rc = name.startswith("releasecache")
        note = f"{_mbps(d['bytes'], ok[0].get('seconds'))}"
        if is_rc:
            note += f"; RSS after imports {ok[0].get('rss_after_imports_mb', float('nan')):.0f} MB"
        out.append(row("W5", name, f"{peak:.0f} MB", "", "< 200 MB" if is_rc else "",
                       (peak < 200) if is_rc else None, note))
    return out


def _w6(d: dict) -> list[dict]:
    out = []
    for name, rr in d["runs"].items():
        ok = _ok(rr)
        if not ok:
            out.append(row("W6", name, "failed", note=_err(rr)))
            continue
        r = ok[0]
        is_rc = name == "releasecache"
        out.append(row("W6", name, f"{r['median_us']:.0f} µs", "", "< 1 ms" if is_rc else "",
                       (r["median_us"] < 1000) if is_rc else None,
                       f"p90 {r['p90_us']:.0f} µs, p99 {r['p99_us']:.0f} µs over {r['calls']} calls"))
    return out


def _met(m: bool | None) -> str:
    return {True: "met", False: "MISSED", None: ""}[m]


def text_table(rows: list[dict]) -> str:
    cols = [("workload", "WL"), ("contender", "contender"), ("value", "median"), ("ratio", "ratio"),
            ("target", "target"), ("met", "status")]
    cells = [[str(_met(r[k]) if k == "met" else r[k]) for k, _ in cols] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(cols)]
    widths = [min(w, 60) for w in widths]
    line = "  ".join(h.ljust(widths[i]) for i, (_, h) in enumerate(cols))
    out = [line, "-" * len(line)]
    for c, r in zip(cells, rows):
        out.append("  ".join(c[i][:widths[i]].ljust(widths[i]) for i in range(len(cols))))
        if r["note"]:
            out.append(" " * (widths[0] + 2) + "  " + r["note"])
    return "\n".join(out)


def markdown_table(rows: list[dict]) -> str:
    out = ["| workload | contender | median | ratio | target | status | notes |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["workload"], r["contender"], r["value"], r["ratio"], r["target"],
                 f"**{_met(r['met'])}**" if r["met"] is not None else "", r["note"]]
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def _sizes_text(results: dict) -> str:
    w = results.get("workloads", {})
    lines = []
    titles = {k: v.get("title", k) for k, v in w.items()}
    for key in WORKLOADS:
        if key not in w:
            continue
        d = w[key]
        desc = titles[key]
        if key in ("W1", "W2", "W7", "W7b") and "bytes" in d:
            desc += f" — {d['files']} files, {d['bytes'] / 2**20:.0f} MiB"
        if key == "W3" and "changed_bytes" in d:
            desc += f" — {d['total_bytes'] / 2**20:.0f} MiB in all, {d['changed_bytes'] / 2**20:.2f} MiB changed"
        if key == "W4" and "csv_bytes" in d:
            desc += f" — {d['csv_bytes'] / 2**20:.0f} MiB of CSV"
        if d.get("profiles"):
            desc += "; profiles: " + "; ".join(f"{k} ({v})" for k, v in d["profiles"].items())
        if d.get("server"):
            desc += f"; server: {d['server']}"
        if d.get("timing"):
            desc += f"; timing: {d['timing']}"
        lines.append(f"- **{key}**: {desc}")
    return "\n".join(lines)


def _load(v) -> str:
    return ", ".join(f"{x:.2f}" for x in v) if v else "not recorded"


def _shaper_text(results: dict) -> str:
    c = results.get("shaper_ceiling")
    if not c:
        return ""
    parts = [f"{k}: {v['bytes_per_second'] / 1e6:.0f} MB/s" for k, v in c.items() if isinstance(v, dict)]
    return ("Network shaper (bench/shaper.py), its own ceiling with no shaping, measured in this run: "
            + "; ".join(parts) + ". Every cap it models is far below it (90 MB/s per connection at most).")


def write_docs(results: dict, rows: list[dict], path: Path, *, result_file: str) -> None:
    m = results.get("machine", {})
    versions = m.get("versions", {})
    gen = [
        BEGIN,
        "",
        f"Measured {results['timestamp']}{' (QUICK smoke run: small sizes, not the figures to quote)' if results.get('quick') else ''}"
        f" with `make bench`; {results.get('repetitions')} repetitions of every timed run, contenders alternating, "
        f"medians shown. Raw runs: `{result_file}` (also `bench/results/latest.json`). "
        f"The whole suite took {results.get('suite_seconds', 0) / 60:.1f} min.",
        "",
        markdown_table(rows),
        "",
        "Workloads:",
        "",
        _sizes_text(results),
        "",
        f"Page cache between cold runs: {results.get('page_cache', 'unknown')}; the server's files are read back "
        "into memory before each run, so the client side starts cold and the server answers from RAM.",
        "",
        _shaper_text(results),
        "",
        "Machine:",
        "",
        f"- {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('memory_gib')} GiB memory, kernel {m.get('kernel')}, "
        f"{m.get('os')}",
        f"- filesystem of the work directory: `{m.get('filesystem')}`",
        f"- Python {m.get('python')}; " + "; ".join(f"{k} {v}" for k, v in versions.items()),
        f"- load average (1, 5, 15 min) when the suite started: {_load(results.get('load_start'))}; "
        f"when it ended: {_load(results.get('load_end'))} (2 cores, shared with other work)",
        "",
        END,
    ]
    block = "\n".join(gen)
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            path.write_text(head + block + tail)
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Performance\n\n" + block + "\n")
