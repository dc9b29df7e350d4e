"""A FUSE passthrough filesystem whose locks do not work, for the lock-probe tests.

It mirrors a source directory at a mount point, byte for byte, but answers
every ``flock`` and ``fcntl`` lock request itself instead of letting the kernel
keep the lock:

``mode="ignore"``
    Every lock request "succeeds" and nothing is locked: two processes both get
    an exclusive lock on the same file, as on NFS mounted ``nolock`` seen from
    two hosts, or a FUSE network filesystem.
``mode="enolck"``
    Every lock request fails with ``ENOLCK`` ("No locks available"), as NFSv3
    without a reachable ``lockd`` does.
``mode="slow"``
    Locks are the kernel's (they work), but every read waits 50 ms: a slow
    network filesystem, on which a long verify can be killed mid-run.

Because the filesystem implements the ``flock`` and ``lock`` operations,
libfuse announces lock support to the kernel, and the kernel forwards lock
requests here instead of locking locally (see ``fuse_file_flock`` in the
kernel): what this process answers is what the caller gets.

Run as ``python -m tests.support.nolockfs SOURCE MOUNTPOINT MODE`` (in the
foreground; it prints ``mounted`` once the mount is live). Mounting needs
root (or ``fusermount3``) and ``/dev/fuse``; the library is libfuse 3 from
Debian's ``libfuse3-3`` through :mod:`mfusepy` (ctypes, no compiler).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

MODES = ("ignore", "enolck")
ALL_MODES = MODES + ("slow",)


def _operations(source: str, mode: str) -> Any:
    import mfusepy

    class NoLockFS(mfusepy.Operations):
        """Passthrough to ``source``; locks answered by ``mode``."""

        use_ns = True

        def __init__(self) -> None:
            self.root = os.path.realpath(source)
            self.lock_requests = 0

        def _full(self, path: str) -> str:
            return os.path.join(self.root, path.lstrip("/"))

        def _ctx_chown(self, full: str) -> None:
            # New files belong to the calling user and group, as on a real filesystem.
            uid, gid, _pid = mfusepy.fuse_get_context()
            if os.geteuid() == 0 and uid != 0:
                try:
                    os.lchown(full, uid, gid)
                except OSError:
                    pass

        def access(self, path: str, amode: int) -> int:
            if not os.access(self._full(path), amode):
                raise mfusepy.FuseOSError(errno.EACCES)
            return 0

        def chmod(self, path: str, mode_: int) -> int:
            os.chmod(self._full(path), mode_)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            os.lchown(self._full(path), uid, gid)
            return 0

        def create(self, path: str, mode_: int, fi: Any = None) -> int:
            full = self._full(path)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode_)
            self._ctx_chown(full)
            return fd

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            st = os.lstat(self._full(path))
            keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid",
                    "st_ino")
            out = {k: getattr(st, k) for k in keys}
            for k in ("st_atime", "st_ctime", "st_mtime"):
                out[k] = getattr(st, k + "_ns")
            return out

        def link(self, target: str, source_: str) -> int:
            os.link(self._full(source_), self._full(target))
            return 0

        def mkdir(self, path: str, mode_: int) -> int:
            full = self._full(path)
            os.mkdir(full, mode_)
            self._ctx_chown(full)
            return 0

        def open(self, path: str, flags: int) -> int:
            return os.open(self._full(path), flags)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            if mode == "slow":
                time.sleep(0.05)
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return os.pwrite(fh, data, offset)

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", ".."] + os.listdir(self._full(path))

        def readlink(self, path: str) -> str:
            return os.readlink(self._full(path))

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            os.fsync(fh)
            return 0

        def rename(self, old: str, new: str) -> int:
            os.rename(self._full(old), self._full(new))
            return 0

        def rmdir(self, path: str) -> int:
            os.rmdir(self._full(path))
            return 0

        def statfs(self, path: str) -> dict[str, Any]:
            sv = os.statvfs(self._full(path))
            return {k: getattr(sv, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                 "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

        def symlink(self, target: str, source_: str) -> int:
            full = self._full(target)
            os.symlink(source_, full)
            return 0

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            os.truncate(self._full(path), length)
            return 0

        def unlink(self, path: str) -> int:
            os.unlink(self._full(path))
            return 0

        def utimens(self, path: str, times: Any = None) -> int:
            os.utime(self._full(path), ns=times) if times else os.utime(self._full(path))
            return 0

        # The point of this filesystem: lock requests never lock anything.
        def flock(self, path: str, fh: int, op: int) -> int:
            self.lock_requests += 1
            if mode == "enolck":
                raise mfusepy.FuseOSError(errno.ENOLCK)
            return 0

        def lock(self, path: str, fh: int, cmd: int, lock: Any) -> int:
            self.lock_requests += 1
            if mode == "enolck":
                raise mfusepy.FuseOSError(errno.ENOLCK)
            return 0

    if mode == "slow":  # leave locking to the kernel: these locks work
        del NoLockFS.flock, NoLockFS.lock
    return NoLockFS()


def serve(source: str, mountpoint: str, mode: str) -> None:
    """Mount and serve until unmounted (blocks)."""
    import mfusepy

    if mode not in ALL_MODES:
        raise SystemExit(f"mode must be one of {ALL_MODES}")
    ops = _operations(source, mode)

    def announce() -> None:
        for _ in range(200):
            if os.path.ismount(mountpoint):
                print("mounted", flush=True)
                return
            time.sleep(0.05)

    threading.Thread(target=announce, daemon=True).start()
    mfusepy.FUSE(ops, mountpoint, foreground=True, nothreads=False, allow_other=True, direct_io=(mode == "slow"),
                 default_permissions=True, fsname=f"nolockfs-{mode}", subtype="nolockfs")


class NoLockMount:
    """Context manager: mount :mod:`nolockfs` over ``source`` at ``mountpoint`` in a child process."""

    def __init__(self, source: Path, mountpoint: Path, mode: str = "ignore") -> None:
        self.source, self.mountpoint, self.mode = Path(source), Path(mountpoint), mode
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "NoLockMount":
        self.source.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.nolockfs", str(self.source),
                                      str(self.mountpoint), self.mode], cwd=root, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "mounted":
            self.proc.kill()
            _out, err = self.proc.communicate(timeout=10)
            raise RuntimeError(f"could not mount nolockfs at {self.mountpoint}: {line} {err[-2000:]}")
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def available() -> str | None:
    """None if a nolockfs can be mounted here, else why not."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    if os.geteuid() != 0:
        return "mounting a FUSE filesystem with allow_other needs root"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError, EnvironmentError) as exc:
        return f"mfusepy / libfuse cannot be loaded ({exc}); install Debian's libfuse3-3"
    return None


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.argv[3])
