"""What the benchmark ran on, and the page-cache handling between cold runs."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], timeout: float = 20) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (out.stdout + out.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _first_line(text: str) -> str:
    return text.splitlines()[0].strip() if text else "not installed"


def _meminfo_gib() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return float("nan")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _pkg_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def describe(work: Path, allensdk_python: str | None) -> dict:
    """The machine and every contender's version."""
    fs = _run(["df", "-T", "-h", str(work)]).splitlines()
    fs_line = re.sub(r"\s+", " ", fs[-1]) if len(fs) > 1 else ""
    commit = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = bool(_run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "src"]))
    info = {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _meminfo_gib(),
        "kernel": platform.release(),
        "os": _os_release(),
        "filesystem": fs_line,
        "python": platform.python_version(),
        "versions": {
            "releasecache": f"{_pkg_version('releasecache')} (git {commit}{', with uncommitted changes in src/' if dirty else ''})",
            "boto3": _pkg_version("boto3"),
            "botocore": _pkg_version("botocore"),
            "s3transfer": _pkg_version("s3transfer"),
            "requests": _pkg_version("requests"),
            "urllib3": _pkg_version("urllib3"),
            "moto": _pkg_version("moto"),
            "pandas": _pkg_version("pandas"),
            "nginx": "",
            "aria2c": _first_line(_run(["aria2c", "--version"])).replace("aria2 version ", "")
                      if shutil.which("aria2c") else "not installed",
            "curl": " ".join(_first_line(_run(["curl", "--version"])).split()[1:2]) if shutil.which("curl")
                    else "not installed",
        },
    }
    from servers import nginx_version

    info["versions"]["nginx"] = nginx_version()
    if allensdk_python:
        code = ("import sys, importlib.metadata as m; "
                "print(sys.version.split()[0], m.version('allensdk'), m.version('boto3'), m.version('pandas'))")
        out = _run([allensdk_python, "-c", code], timeout=60).split()
        if len(out) == 4:
            info["versions"]["allensdk"] = f"{out[1]} (python {out[0]}, boto3 {out[2]}, pandas {out[3]})"
        else:
            info["versions"]["allensdk"] = "not available"
    else:
        info["versions"]["allensdk"] = "not available"
    return info


def _os_release() -> str:
    try:
        text = Path("/etc/os-release").read_text()
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', text, re.M)
        return match.group(1) if match else "unknown"
    except OSError:
        return sys.platform


class PageCache:
    """Between cold runs: flush dirty pages, drop the page cache (if the kernel lets us),
    then read the server-side files back in, so the server answers from memory as a
    real server would and only the client side starts cold."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.drops = 0
        self.failures = 0
        self.last_error = ""

    @property
    def status(self) -> str:
        if not self.enabled:
            return "disabled (BENCH_DROP_CACHES=0): sync only"
        if self.drops and not self.failures:
            return "dropped before every cold run (sync; echo 3 > /proc/sys/vm/drop_caches)"
        if self.drops:
            return f"dropped {self.drops} times, failed {self.failures} times ({self.last_error})"
        if self.failures:
            return f"could not drop ({self.last_error}): sync only"
        return "not needed"

    def cold(self, warm_paths: list[str] | None = None) -> None:
        os.sync()
        if self.enabled:
            try:
                with open("/proc/sys/vm/drop_caches", "w") as fh:
                    fh.write("3\n")
                self.drops += 1
            except OSError as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc.strerror or exc}"
        for path in warm_paths or []:
            _read_all(path)


def read_all(path: str) -> None:
    """Read a file through the page cache (so a server answers it from memory)."""
    _read_all(path)


def _read_all(path: str) -> None:
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        while os.readv(fd, [view]) > 0:
            pass
    finally:
        os.close(fd)
