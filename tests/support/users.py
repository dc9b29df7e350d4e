"""Real second and third users for the shared-cache tests.

The tests run as root and start ``releasecache`` (the CLI or a worker) as other
uids with ``setpriv``: no password entries are needed, so nothing on the
machine is changed. Three users:

``alice`` (uid 23101) and ``bob`` (uid 23102)
    Members of the lab group (gid 23100), the group a shared cache belongs to.
``carol`` (uid 23103)
    In another group (gid 23199): "everybody else".

Every user gets its own ``HOME`` below the test's shared directory; the
directory itself is made traversable (0755) so that the users can reach it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAB_GID = 23100
OTHER_GID = 23199
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    def run(self, argv: list[str], *, home: Path, umask: int = 0o002, env: dict[str, str] | None = None,
            timeout: float = 180.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as this user (its uid, primary group and only that group) with ``umask``."""
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, self.uid, self.gid)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASECACHE_")}
        full_env.update(HOME=str(home), USER=self.name, LOGNAME=self.name, PYTHONPATH=str(REPO_ROOT),
                        PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", TMPDIR=str(home))
        full_env.update(env or {})
        cmd = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", f"--groups={self.gid}", "--", *argv]
        return subprocess.run(cmd, env=full_env, cwd=str(home), capture_output=True, text=True, timeout=timeout,
                              input=input, preexec_fn=lambda: os.umask(umask))

    def python(self, code: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-c", code, *args], **kwargs)

    def worker(self, settings: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Run a :mod:`tests.support.workers` action as this user; its last stdout line as JSON."""
        done = self.run([sys.executable, "-m", "tests.support.workers", json.dumps(settings)], **kwargs)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        if not lines:
            raise AssertionError(f"{self.name}'s worker printed nothing (exit {done.returncode}): "
                                 f"{done.stderr[-3000:]}")
        out = json.loads(lines[-1])
        out["stderr"] = done.stderr
        out["returncode"] = done.returncode
        return out

    def cli(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``releasecache ARGS`` as this user."""
        return self.run([str(Path(sys.executable).with_name("releasecache")), *args], **kwargs)


ALICE = User("alice", 23101, LAB_GID)
BOB = User("bob", 23102, LAB_GID)
CAROL = User("carol", 23103, OTHER_GID)


def can_switch_users() -> str | None:
    """None if this process can run commands as other uids, else why not.

    Also makes the checkout (its source, tests and virtual environment) reachable
    by the other uids: a clone below a 0700 directory (``/root/...``) gets the
    search bit, and only that, on each parent directory.
    """
    if os.geteuid() != 0:
        return "switching uids needs root"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing"
    for parent in [REPO_ROOT, *REPO_ROOT.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod((mode & 0o7777) | 0o001)
    return None


def shared_tmp(prefix: str = "rc-users-") -> Path:
    """A fresh directory under the system temp dir that every user can traverse (0755).

    pytest's ``tmp_path`` lives below a 0700 directory, out of other users' reach.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def lab_directory(path: Path, *, mode: int = 0o2775) -> Path:
    """The recipe's first step: the cache directory belongs to the lab group, setgid, group-writable."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, LAB_GID)
    path.chmod(mode)
    return path
