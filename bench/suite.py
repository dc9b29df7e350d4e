"""The releasecache benchmark suite: every workload side by side with its references, on loopback.

Run it with ``make bench`` (or ``bash bench/run.sh``), which installs what it needs first.
``BENCH_QUICK=1`` runs a 2-3 minute smoke version with small sizes.

Environment:
  BENCH_QUICK=1            small sizes, 2 repetitions
  BENCH_REPS=N             repetitions of each timed run (default 5; quick 2)
  BENCH_ONLY=W1,W3         run only these workloads
  BENCH_DROP_CACHES=0      do not drop the page cache between cold runs (sync only)
  BENCH_NO_DOCS=1          do not rewrite docs/performance.md
  BENCH_RESULTS=dir        write the JSON results there instead of bench/results/
  BENCH_WORK=dir           data, environments and scratch (default bench/work/)
  ALLENSDK_PYTHON=path     the AllenSDK environment's python (run.sh sets it)
"""

from __future__ import annotations

import compileall
import datetime as _dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # tests.support: the loopback S3 server and fault proxy

import datagen  # noqa: E402
import machine  # noqa: E402
import report  # noqa: E402
from servers import Nginx  # noqa: E402

MiB = datagen.MiB
GiB = datagen.GiB
REPO = HERE.parent
WORK = Path(os.environ.get("BENCH_WORK", HERE / "work"))
RESULTS = Path(os.environ.get("BENCH_RESULTS", HERE / "results"))
PY = sys.executable

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
REPS = int(os.environ.get("BENCH_REPS", "2" if QUICK else "3"))
# The references' default settings are run this many times (their tuned settings REPS times).
REPS_DEFAULTS = int(os.environ.get("BENCH_REPS_DEFAULTS", "1"))
ONLY = {w.strip().upper() for w in os.environ.get("BENCH_ONLY", "").split(",") if w.strip()}

# Sizes. The full suite follows the issue (W1: 2 x 1 GiB + 200 x 1 MiB; W3: 2,000 files, 1% changed;
# W5: one 2 GiB file); quick mode shrinks everything for a smoke run.
SIZES = {
    "w1": dict(big=2, big_size=1 * GiB, small=200, small_size=1 * MiB),
    "w2": dict(sessions=4, session_size=64 * MiB, probes_per_session=2, probe_size=32 * MiB,
               behavior=32, behavior_size=4 * MiB),
    "w3": dict(files=2000, changed=20, min_size=16 * 1024, max_size=256 * 1024),
    "w4": dict(warm_reps=5),
    "w5": dict(size=2 * GiB),
    "w6": dict(calls=20000, allensdk_calls=5000),
    "w7": dict(big_size=512 * MiB, small=64, small_size=4 * MiB),
    "w8": dict(units_per_probe=100, spike_factor=250),
    "w9": dict(files=[1000, 4298, 10000, 100000]),
}
if QUICK:
    SIZES = {
        "w1": dict(big=2, big_size=128 * MiB, small=40, small_size=1 * MiB),
        "w2": dict(sessions=2, session_size=16 * MiB, probes_per_session=2, probe_size=8 * MiB,
                   behavior=8, behavior_size=1 * MiB),
        "w3": dict(files=400, changed=4, min_size=16 * 1024, max_size=128 * 1024),
        "w4": dict(warm_reps=2, n_sessions=20),
        "w5": dict(size=256 * MiB),
        "w6": dict(calls=3000, allensdk_calls=1000),
        "w7": dict(big_size=64 * MiB, small=16, small_size=1 * MiB),
        "w8": dict(units_per_probe=100, spike_factor=150),
        "w9": dict(files=[1000, 4298, 10000]),
    }

# Settings found by bench/tune.py on these 2-core machines (see docs/performance.md); run as a
# second releasecache contender next to the defaults. Empty: defaults only.
TUNED: dict = {}
TUNED_MAX_FILES: int | None = None


def log(msg: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", flush=True)


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Suite:
    def __init__(self) -> None:
        self.allensdk_python = os.environ.get("ALLENSDK_PYTHON") or None
        if self.allensdk_python and not Path(self.allensdk_python).exists():
            self.allensdk_python = None
        self.cache = machine.PageCache(os.environ.get("BENCH_DROP_CACHES", "1") != "0")
        self.logs = WORK / "logs"
        self.runs_dir = WORK / "runs"
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.nginx: Nginx | None = None
        self.results: dict = {
            "schema": 1,
            "timestamp": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "quick": QUICK,
            "repetitions": REPS,
            "sizes": SIZES,
            "workloads": {},
        }
        self._n = 0
        self.work = WORK
        self.here = HERE
        self.only = ONLY
        self.log = log

    # -- plumbing -----------------------------------------------------------------------

    def fresh_dir(self, name: str) -> Path:
        path = self.runs_dir / name
        if path.exists() or path.is_symlink():
            _rmtree(path)
        return path

    def child(self, label: str, cmd: list[str], env: dict | None = None, timeout: float = 1800) -> dict:
        """Run one contender process; return its JSON (if it prints one) plus the process wall time."""
        self._n += 1
        full_env = dict(os.environ)
        full_env.update({"AWS_EC2_METADATA_DISABLED": "true", "PYTHONDONTWRITEBYTECODE": "1",
                         "PYTHONWARNINGS": "ignore"})
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)  # None removes a variable
            else:
                full_env[k] = v
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=HERE)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s", "process_seconds": time.perf_counter() - t0}
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        process_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        logfile = self.logs / f"{self._n:03d}-{label.replace(' ', '_').replace('/', '_')}.log"
        logfile.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout[-20000:]}\n--- stderr\n{proc.stderr[-20000:]}")
        out: dict = {}
        for line in reversed(proc.stdout.strip().splitlines()):
            if line.startswith("{"):
                try:
                    out = json.loads(line)
                    break
                except ValueError:
                    pass
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
            out["error"] = f"exit {proc.returncode}: {tail[0][:300]} (log: {logfile.relative_to(WORK)})"
        out["process_seconds"] = wall
        out["process_cpu_seconds"] = process_cpu  # user + system of the whole process tree
        out["log"] = str(logfile)
        return out

    def rc(self, label: str, req: dict, **kw) -> dict:
        return self.child(label, [PY, str(HERE / "worker_rc.py"), json.dumps(req)], **kw)

    def allensdk(self, label: str, req: dict, endpoint: str) -> dict:
        if not self.allensdk_python:
            return {"error": "AllenSDK environment not available"}
        return self.child(label, [self.allensdk_python, str(HERE / "worker_allensdk.py"), json.dumps(req)],
                          env={"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-west-2"})

    def start_nginx(self) -> Nginx:
        if self.nginx is None:
            self.nginx = Nginx(WORK / "nginx", WORK / "s3root", WORK / "listings").start()
            log(f"nginx serving {WORK / 's3root'} at {self.nginx.url}")
        return self.nginx

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
            self.nginx = None

    def record(self, key: str, data: dict) -> None:
        self.results["workloads"][key] = data

    # -- W1 -------------------------------------------------------------------------------

    def w1(self) -> None:
        s = SIZES["w1"]
        log(f"W1: generating {s['big']} x {s['big_size'] // MiB} MiB + {s['small']} x {s['small_size'] // MiB} MiB")
        data = datagen.http_bulk(WORK, **s)
        ng = self.start_nginx()
        base = f"{ng.url}/{data['bucket']}"
        objs = data["objects"]
        lists = WORK / "w1-lists"
        lists.mkdir(exist_ok=True)
        aria_list = lists / "aria2.txt"
        aria_list.write_text("".join(f"{base}/{o.key}\n  out={o.key}\n" for o in objs))
        curl_cfg = lists / "curl.cfg"
        curl_cfg.write_text("".join(f'url = "{base}/{o.key}"\noutput = "{{dest}}/{o.key}"\n' for o in objs))

        def curl_config(dest: Path) -> Path:
            path = lists / "curl-run.cfg"
            path.write_text(curl_cfg.read_text().replace("{dest}", str(dest)))
            return path

        def run_rc(dest: Path, transfer: dict | None = None, max_files: int | None = None) -> dict:
            req = {"action": "bulk", "remote": "http", "endpoint": ng.url, "bucket": data["bucket"],
                   "project": data["project"], "manifest": data["manifest"], "cache_dir": str(dest)}
            if transfer:
                req["transfer"] = transfer
            if max_files:
                req["max_files"] = max_files
            out = self.rc("w1-releasecache", req)
            if not out.get("error") and out.get("failed"):
                out["error"] = f"{len(out['failed'])} files failed"
            return out

        def run_cmd(label: str, cmd: list[str]) -> dict:
            out = self.child(label, cmd)
            out["seconds"] = out["process_seconds"]
            return out

        contenders = {
            "releasecache": lambda d: run_rc(d),
            "aria2c -x8 -j8": lambda d: run_cmd("w1-aria2c", [
                "aria2c", "-x8", "-s8", "-j8", "-i", str(aria_list), "-d", str(d), "--file-allocation=falloc",
                "--auto-file-renaming=false", "--allow-overwrite=true", "--console-log-level=warn",
                "--summary-interval=0", "--download-result=hide", "-q"]),
            "curl --parallel": lambda d: run_cmd("w1-curl-parallel", [
                "curl", "--parallel", "--parallel-max", "8", "-sSf", "--create-dirs", "-K", str(curl_config(d))]),
            "curl (sequential)": lambda d: run_cmd("w1-curl-seq", [
                "curl", "-sSf", "--create-dirs", "-K", str(curl_config(d))]),
        }
        if TUNED or TUNED_MAX_FILES:
            contenders["releasecache (tuned)"] = lambda d: run_rc(d, TUNED, TUNED_MAX_FILES)
        if not shutil.which("aria2c"):
            contenders.pop("aria2c -x8 -j8")
        runs = self.alternate("W1", contenders, warm=data["paths"], expect_bytes=data["bytes"], durable=True)
        self.record("W1", {"title": "cold bulk download over HTTP (nginx)", "bytes": data["bytes"], "files": len(objs),
                           "runs": runs, "timing": "aria2c and curl: process wall time; releasecache: inside its "
                                                  "process after imports (whole process also shown)"})

    def alternate(self, wl: str, contenders: dict, *, warm: list[str] | None = None, expect_bytes: int | None = None,
                  reps: int = REPS, counted: bool = True, durable: bool = False, drop: bool = True) -> dict:
        """Run each contender ``reps`` times, rotating the order every repetition; each run cold.

        ``drop=False`` (the network workloads, where the link is the bottleneck): flush dirty pages
        but keep the page cache, so the server side stays warm without re-reading its files.
        """
        names = list(contenders)
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for rep in range(reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                dest = self.fresh_dir(f"{wl.lower().replace(' ', '-')}-dest")
                if drop:
                    self.cache.cold(warm)
                else:
                    os.sync()
                offset = self.nginx.log_offset() if (counted and self.nginx) else None
                load1 = os.getloadavg()[0]
                out = contenders[name](dest)
                out["load1_before"] = load1
                if durable and isinstance(out.get("seconds"), (int, float)):
                    # Time until the bytes are on disk: releasecache fsyncs every blob before it
                    # returns; the references leave dirty pages behind, flushed here.
                    t = time.perf_counter()
                    os.sync()
                    out["sync_seconds"] = time.perf_counter() - t
                    out["durable_seconds"] = out["seconds"] + out["sync_seconds"]
                if offset is not None:
                    out["server"] = self.nginx.count_since(offset)
                    if expect_bytes and out["server"]["body_bytes"] < expect_bytes and not out.get("error"):
                        out["error"] = f"server sent {out['server']['body_bytes']} bytes, expected >= {expect_bytes}"
                runs[name].append(out)
                secs = out.get("seconds")
                extra = f" ({out['error']})" if out.get("error") else ""
                log(f"{wl} rep {rep + 1}/{reps} {name}: "
                    f"{'%.2f s' % secs if isinstance(secs, (int, float)) else 'n/a'}{extra}")
        self.fresh_dir(f"{wl.lower().replace(' ', '-')}-dest")
        return runs

    # -- W2 -------------------------------------------------------------------------------

    def w2(self) -> None:
        s = SIZES["w2"]
        log("W2: generating a small release in the VBN layout")
        data = datagen.small_vbn_release(WORK, **s)
        ng = self.start_nginx()
        run_sdk = self.w2_on(data, ng.url, "W2", "cold download of a small release over the S3 API (nginx as S3)")
        if not ONLY or "W2" in ONLY:
            import network
            from shaper import Shaper

            for profile in network.profiles_selected():
                with Shaper(("127.0.0.1", ng.port), profile) as sh:
                    self.w2_on(data, sh.url, f"W2 {profile.name}",
                               f"W2 through the shaper, {profile.name} ({profile.describe()})", sdk_reps=REPS_DEFAULTS)
        self._w6_reference(data, ng, run_sdk)

    def w2_on(self, data: dict, endpoint: str, key: str, title: str, sdk_reps: int | None = None):
        objs = data["objects"]
        common = {"endpoint": endpoint, "bucket": data["bucket"], "project": data["project"]}

        def run_rc(dest: Path) -> dict:
            out = self.rc("w2-releasecache", {**common, "action": "bulk", "remote": "s3", "manifest": data["manifest"],
                                              "cache_dir": str(dest)})
            if not out.get("error") and out.get("failed"):
                out["error"] = f"{len(out['failed'])} files failed"
            return out

        def run_sdk(dest: Path) -> dict:
            out = self.allensdk("w2-allensdk", {"action": "download", "cache_dir": str(dest)}, endpoint)
            if "seconds" in out:
                out["seconds_without_list_versions"] = out["seconds"] - out.get("list_versions_seconds", 0.0)
            return out

        def run_boto3(dest: Path) -> dict:
            return self.child("w2-boto3", [PY, str(HERE / "worker_boto3.py"), json.dumps({
                **common, "dest": str(dest), "send_version_id": True,
                "objects": [{"key": o.key, "version_id": o.version_id} for o in objs]})])

        contenders = {"releasecache": run_rc, "boto3 download_file": run_boto3}
        if sdk_reps is None:
            contenders["AllenSDK 2.16.2"] = run_sdk
        drop = key == "W2"  # through the shaper the link is the bottleneck: keep the page cache
        runs = self.alternate(key, contenders, warm=data["paths"], expect_bytes=data["bytes"], durable=True,
                              drop=drop)
        if sdk_reps:
            runs.update(self.alternate(key, {"AllenSDK 2.16.2": run_sdk}, warm=data["paths"],
                                       expect_bytes=data["bytes"], durable=True, reps=sdk_reps, drop=drop))
        self.record(key, {"title": title, "bytes": data["bytes"], "files": len(objs), "runs": runs,
                          "server": "nginx as a read-only S3 endpoint (static ListObjectsV2/ListObjectVersions)",
                          "timing": "inside each process, after imports"})
        return run_sdk

    def _w6_reference(self, data: dict, ng, run_sdk) -> None:
        objs = data["objects"]
        # W6 reference: AllenSDK's cache-hit latency on a cache it filled itself.
        sdk_dir = self.fresh_dir("w6-allensdk")
        first = run_sdk(sdk_dir)
        if not first.get("error"):
            self.w6_allensdk = self.allensdk("w6-allensdk", {"action": "hits", "cache_dir": str(sdk_dir),
                                                             "file_id": objs[0].name,
                                                             "calls": SIZES["w6"]["allensdk_calls"]}, ng.url)
        else:
            self.w6_allensdk = {"error": first["error"]}

    # -- W3 -------------------------------------------------------------------------------

    def w3(self) -> None:
        s = SIZES["w3"]
        log(f"W3: generating {s['files']} files, {s['changed']} changed between versions")
        info = datagen.version_switch_sources(WORK, **s)
        from tests.support.proxy import FaultProxy
        from tests.support.s3server import S3Server, publish_fixture

        bucket = "bench-switch"
        with S3Server() as server:
            t = time.perf_counter()
            manifests = publish_fixture(server, bucket, info["project"], {v: Path(p) for v, p in info["versions"].items()})
            log(f"W3: published 2 versions to the moto S3 server in {time.perf_counter() - t:.1f} s")
            names = [m.name for m in manifests]
            base_dir = self.fresh_dir("w3-base")
            common = {"action": "bulk", "remote": "s3", "bucket": bucket, "project": info["project"]}
            self.cache.cold()
            setup = self.rc("w3-setup", {**common, "endpoint": server.endpoint_url, "manifest": names[0],
                                         "cache_dir": str(base_dir)})
            log(f"W3: cold prefetch of v1 ({info['files']} files) from moto: {setup.get('seconds', float('nan')):.1f} s"
                + (f" ({setup['error']})" if setup.get("error") else ""))
            with FaultProxy(server.endpoint_url) as proxy:
                def switch_via(endpoint: str):
                    def switch(dest: Path) -> dict:
                        shutil.copytree(base_dir, dest, symlinks=True)
                        self.cache.cold()
                        proxy.clear()
                        out = self.rc("w3-switch", {**common, "endpoint": endpoint, "manifest": names[1],
                                                    "cache_dir": str(dest)})
                        out["wire_bytes"] = proxy.stats.bytes_sent
                        out["wire_requests"] = sum(proxy.stats.requests.values())
                        return out
                    return switch

                def transfer_only_via(endpoint: str):
                    def transfer_only(dest: Path) -> dict:
                        proxy.clear()
                        out = self.rc("w3-transfer-only", {**common, "endpoint": endpoint, "manifest": names[1],
                                                           "cache_dir": str(dest), "file_ids": info["changed_ids"],
                                                           "metadata": False})
                        out["wire_bytes"] = proxy.stats.bytes_sent
                        out["wire_requests"] = sum(proxy.stats.requests.values())
                        return out
                    return transfer_only

                runs = self.alternate("W3", {"switch 1.0.0 -> 1.1.0": switch_via(proxy.url),
                                             "changed files only, empty cache": transfer_only_via(proxy.url)},
                                      counted=False)
                import network
                from shaper import Shaper

                shaped = {}
                port = int(proxy.url.rsplit(":", 1)[1].split("/")[0])
                for profile in network.profiles_selected():
                    with Shaper(("127.0.0.1", port), profile) as sh:
                        shaped[profile.name] = self.alternate(
                            f"W3 {profile.name}", {"switch 1.0.0 -> 1.1.0": switch_via(sh.url),
                                                   "changed files only, empty cache": transfer_only_via(sh.url)},
                            counted=False)
        manifest_bytes = (Path(base_dir) / "manifests" / names[0]).stat().st_size if base_dir.exists() else None
        self.record("W3", {"title": f"version switch, {info['files']} files, {len(info['changed_ids'])} changed (moto S3 server)",
                           "files": info["files"], "changed_files": len(info["changed_ids"]),
                           "changed_bytes": info["changed_bytes"], "total_bytes": info["total_bytes"],
                           "manifest_bytes": manifest_bytes, "setup": setup, "runs": runs,
                           "server": "moto S3 server (real versioning) behind a counting proxy",
                           "timing": "inside the process: from_s3 + load_manifest(new) + prefetch()"})
        for pname, pruns in shaped.items():
            self.record(f"W3 {pname}", {**self.results["workloads"]["W3"], "runs": pruns,
                                        "title": f"W3 through the shaper, {pname}"})
        _rmtree(base_dir)

    # -- W4 -------------------------------------------------------------------------------

    def w4(self) -> None:
        s = SIZES["w4"]
        try:
            import releasecache

            getattr(releasecache, "ProjectCache")
        except Exception as exc:
            self.record("W4", {"title": "warm start", "unavailable": f"ProjectCache not importable: {exc}"})
            log(f"W4: not available ({exc})")
            return
        try:
            data = datagen.full_scale_tables_release(WORK, n_sessions=s.get("n_sessions"))
        except Exception as exc:
            self.record("W4", {"title": "warm start",
                               "unavailable": f"full-scale tables generator not usable: {type(exc).__name__}: {exc}"})
            log(f"W4: not available ({exc})")
            return
        log(f"W4: full-scale tables ready ({data['rows']} units, {data['bytes'] / MiB:.0f} MiB of CSV)")
        # W4 times whole processes, imports included, and the children run with
        # PYTHONDONTWRITEBYTECODE=1: byte-compile releasecache once, as installing a wheel does
        # (AllenSDK's environment was installed by pip, which compiled it), instead of letting an
        # editable checkout be compiled from source in every timed process.
        compileall.compile_dir(str(Path(releasecache.__file__).parent), quiet=1)
        ng = self.start_nginx()
        rc_dir = self.fresh_dir("w4-releasecache")
        sdk_dir = self.fresh_dir("w4-allensdk")
        rc_req = {"action": "warm", "remote": "s3", "endpoint": ng.url, "bucket": data["bucket"],
                  "project": data["project"], "cache_dir": str(rc_dir)}
        sdk_req = {"action": "warm", "cache_dir": str(sdk_dir), "bucket": data["bucket"]}
        first = {"releasecache": self.rc("w4-first-releasecache", rc_req),
                 "AllenSDK 2.16.2": self.allensdk("w4-first-allensdk", sdk_req, ng.url)}
        for name, out in first.items():
            log(f"W4 first (cold) {name}: {out.get('seconds', float('nan')):.2f} s"
                + (f" ({out.get('error') or out.get('unavailable')})" if out.get("error") or out.get("unavailable") else ""))
        if first["releasecache"].get("unavailable"):
            self.record("W4", {"title": "warm start", "unavailable": first["releasecache"]["unavailable"]})
            return
        contenders = {"releasecache": lambda d: self.rc("w4-releasecache", rc_req),
                      "AllenSDK 2.16.2": lambda d: self.allensdk("w4-allensdk", sdk_req, ng.url)}
        runs = self.alternate("W4", contenders, reps=s["warm_reps"], counted=False)
        # The same again with the page cache kept: a user's second script of the day finds
        # the interpreter's and the libraries' files in memory (only dirty pages are flushed).
        hot = self.alternate("W4 hot", contenders, reps=s["warm_reps"], counted=False, drop=False)
        # Each sample takes a fraction of a second: take more of them for a steadier median.
        reload = self.table_reload(WORK / "s3root" / data["bucket"] / data["project"] / "project_metadata" / "units.csv",
                                   reps=3 * s["warm_reps"])
        self.record("W4", {"title": "warm start: from_s3 + get_unit_table() on full-scale tables (nginx as S3)",
                           "rows": data["rows"], "csv_bytes": data["bytes"], "first": first, "runs": runs,
                           "runs_page_cache_warm": hot,
                           "reload": reload,
                           "timing": "inside a fresh process, after imports; tables already in the cache"})

    def table_reload(self, csv: Path, reps: int) -> dict:
        """Reload of an unchanged units table from its columnar sidecar vs parsing the CSV again."""
        import pandas as pd
        from releasecache.vbn.tables import file_content_hash, load_table

        sidecars = self.fresh_dir("w4-sidecars")
        content_hash = file_content_hash(csv)
        load_table("units", csv, content_hash=content_hash, sidecar_dir=sidecars)  # writes the sidecar
        times: dict[str, list[float]] = {"pandas.read_csv": [], "sidecar reload": []}
        for _ in range(reps):  # alternating, warm page cache for both
            t = time.perf_counter()
            pd.read_csv(csv)
            times["pandas.read_csv"].append(time.perf_counter() - t)
            t = time.perf_counter()
            load_table("units", csv, content_hash=content_hash, sidecar_dir=sidecars)
            times["sidecar reload"].append(time.perf_counter() - t)
        log("W4 table reload: " + ", ".join(f"{k} {median(v):.3f} s" for k, v in times.items()))
        return {"csv": str(csv), "seconds": times}

    # -- W5 + W6 --------------------------------------------------------------------------

    def w5_w6(self) -> None:
        s = SIZES["w5"]
        log(f"W5: generating one {s['size'] / GiB:.2f} GiB file")
        data = datagen.one_big_file(WORK, s["size"])
        ng = self.start_nginx()
        obj = data["objects"][0]
        timev = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)

        def measured(label: str, cmd: list[str]) -> dict:
            if timev:
                cmd = [timev, "-v", *cmd]
            out = self.child(label, cmd)
            text = Path(out["log"]).read_text() if "log" in out else ""
            for line in text.splitlines():
                if "Maximum resident set size" in line:
                    out["time_v_max_rss_mb"] = int(line.split(":")[1]) / 1024
            return out

        runs: dict[str, list[dict]] = {}
        keep = None
        for remote in ("http", "s3"):
            name = f"releasecache ({'HTTP' if remote == 'http' else 'S3 API'})"
            dest = self.fresh_dir(f"w5-{remote}")
            self.cache.cold(data["paths"])
            req = {"action": "one", "remote": remote, "endpoint": ng.url, "bucket": data["bucket"],
                   "project": data["project"], "manifest": data["manifest"], "cache_dir": str(dest),
                   "file_id": obj.name}
            runs[name] = [measured(f"w5-{remote}", [PY, str(HERE / "worker_rc.py"), json.dumps(req)])]
            log(f"W5 {name}: peak RSS {runs[name][0].get('peak_rss_mb', float('nan')):.0f} MB"
                + (f" ({runs[name][0]['error']})" if runs[name][0].get("error") else ""))
            keep = (dest, req) if remote == "http" else keep
        dest = self.fresh_dir("w5-boto3")
        self.cache.cold(data["paths"])
        runs["boto3 download_file"] = [measured("w5-boto3", [PY, str(HERE / "worker_boto3.py"), json.dumps({
            "endpoint": ng.url, "bucket": data["bucket"], "dest": str(dest),
            "objects": [{"key": obj.key, "version_id": obj.version_id}]})])]
        _rmtree(dest)
        self.record("W5", {"title": f"peak memory while fetching one {s['size'] / GiB:.2f} GiB file",
                           "bytes": s["size"], "runs": runs,
                           "timing": "peak RSS of the whole process (getrusage; /usr/bin/time -v agrees)"})
        # W6 on the cache W5 filled.
        if keep is not None:
            dest, req = keep
            hits = self.rc("w6", {**req, "action": "hits", "calls": SIZES["w6"]["calls"]})
            log(f"W6 releasecache download_data cache hit: median {hits.get('median_us', float('nan')):.1f} us")
            sdk = getattr(self, "w6_allensdk", None) or {"error": "not run (W2 was skipped)"}
            self.record("W6", {"title": "cache-hit latency of download_data for a present file",
                               "runs": {"releasecache": [hits], "AllenSDK 2.16.2": [sdk]}})
        for remote in ("http", "s3"):
            self.fresh_dir(f"w5-{remote}")

    # -- W7 / W7b: over emulated networks -------------------------------------------------

    def w7(self) -> None:
        import network

        network.W7(self, SIZES["w7"], REPS, REPS_DEFAULTS).run()

    def w9(self) -> None:
        sizes = SIZES["w9"]["files"]
        per_n = {}
        for n in sizes:
            out = self.child(f"w9-{n}", [PY, str(HERE / "worker_scale.py"), json.dumps(
                {"n": n, "dir": str(WORK / "w9" / str(n)), "reps": REPS})], timeout=3600)
            per_n[str(n)] = out
            med = out.get("medians", {})
            log(f"W9 {n} files: " + (out["error"] if out.get("error") else
                                     ", ".join(f"{k} {v:.3f} s" for k, v in med.items())
                                     + f", cache hit {out.get('hit_median_us', float('nan')):.0f} us"))
        self.record("W9", {"title": "scale: manifests of 1k to 100k files, a fully populated cache of small blobs",
                           "by_files": per_n, "timing": f"inside one process per size, median of {REPS}"})

    def w8(self) -> None:
        import network

        network.W8(self, SIZES["w8"], REPS).run()

    # -- all ------------------------------------------------------------------------------

    def run(self) -> int:
        t0 = time.perf_counter()
        self.results["machine"] = machine.describe(WORK, self.allensdk_python)
        self.results["load_start"] = list(os.getloadavg())
        log("machine: " + ", ".join(f"{k}={v}" for k, v in self.results["machine"].items() if k != "versions"))
        plan = [("W1", self.w1), ("W2", self.w2), ("W3", self.w3), ("W4", self.w4), ("W5", self.w5_w6),
                ("W7", self.w7), ("W8", self.w8), ("W9", self.w9)]
        try:
            for key, fn in plan:
                if ONLY and key not in ONLY and not (key == "W5" and "W6" in ONLY) \
                        and not (key == "W7" and "W7B" in ONLY):
                    continue
                t = time.perf_counter()
                try:
                    fn()
                except Exception as exc:
                    log(f"{key} failed: {type(exc).__name__}: {exc}")
                    traceback.print_exc()
                    self.record(key, {"title": key, "unavailable": f"suite error: {type(exc).__name__}: {exc}"})
                log(f"{key} took {time.perf_counter() - t:.0f} s")
        finally:
            self.stop()
        self.results["page_cache"] = self.cache.status
        self.results["load_end"] = list(os.getloadavg())
        self.results["suite_seconds"] = round(time.perf_counter() - t0, 1)
        rows = report.summarize(self.results)
        self.results["summary"] = rows
        RESULTS.mkdir(exist_ok=True)
        stamp = self.results["timestamp"].replace(":", "").replace("-", "")
        name = f"{stamp}{'-quick' if QUICK else ''}.json"
        text = json.dumps(self.results, indent=1, default=_json_default)
        (RESULTS / name).write_text(text)
        (RESULTS / "latest.json").write_text(text)
        print()
        print(report.text_table(rows))
        print()
        log(f"results: {RESULTS / name} and {RESULTS / 'latest.json'}")
        if os.environ.get("BENCH_NO_DOCS", "") in ("", "0"):
            report.write_docs(self.results, rows, REPO / "docs" / "performance.md", result_file=f"bench/results/{name}")
            log("docs/performance.md updated")
        log(f"suite took {self.results['suite_seconds']:.0f} s")
        return 0


def _json_default(obj):
    if hasattr(obj, "to_json"):
        return obj.to_json()
    return str(obj)


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return
    # Blobs are read-only files in read-only-ish dirs; make sure they can be removed.
    subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    import signal

    # A terminated suite (timeout, Ctrl-C) still stops the servers it started: the finally
    # blocks and context managers run on SystemExit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(Suite().run())
