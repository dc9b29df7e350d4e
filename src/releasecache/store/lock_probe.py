"""Which kind of lock a cache directory gets: ``posix`` where ``flock`` really excludes other processes, else ``soft``.

:func:`choose_lock_kind` reads the mount options (:func:`mount_of`,
:func:`host_local_reason`) and, where they do not decide, tries a lock from two
processes (:func:`probe_locks`); the answer is remembered per directory and host.
The locks themselves are in :mod:`releasecache.store.locks`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DEFAULT_LOCK_KIND, ENV_LOCK_KIND
from ..errors import LockFallbackWarning
from ..utils import atomic_write, warn_user

log = logging.getLogger("releasecache")

LOCK_KINDS = ("posix", "soft")
#: What ``lock_kind`` accepts: a kind, or ``"auto"`` (probe the filesystem; the default).
LOCK_CHOICES = ("auto",) + LOCK_KINDS
_HOST = socket.gethostname()


def resolve_lock_kind(kind: str | None) -> str:
    """The lock kind asked for: the argument, else ``$RELEASECACHE_LOCK_KIND``, else ``"auto"``."""
    value = kind or os.environ.get(ENV_LOCK_KIND) or DEFAULT_LOCK_KIND
    if value not in LOCK_CHOICES:
        raise ValueError(f"lock_kind must be one of {LOCK_CHOICES}, not {value!r}")
    return value


# -- does this filesystem's flock exclude? ---------------------------------------

#: Mount options (per filesystem type) under which ``flock`` only excludes processes on one host.
_HOST_LOCAL_OPTIONS = {
    "nfs": ("nolock", "local_lock=all", "local_lock=flock"),
    "nfs4": ("local_lock=all", "local_lock=flock"),
    "lustre": ("localflock",),
    "cifs": ("nobrl",),
    "smb3": ("nobrl",),
}
#: FUSE network filesystems: their locks, if any, are the kernel's local ones.
_HOST_LOCAL_FUSE = ("sshfs", "s3fs", "gcsfuse", "rclone", "goofys", "mountpoint-s3", "juicefs", "davfs")
_PROBE_CHILD = (
    "import errno, fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR)\n"
    "try:\n"
    "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "except OSError as exc:\n"
    "    sys.exit(10 if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else 20)\n"
    "sys.exit(0)\n"
)
_PROBE_FORMAT = 1
_probed: dict[tuple[str, int], str] = {}  # (locks dir, st_dev) -> kind, for this process
_probe_guard = threading.Lock()


@dataclass(frozen=True)
class Mount:
    """The mount a path lives on, from ``/proc/self/mountinfo``."""

    point: str
    fstype: str
    source: str
    options: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.fstype} filesystem {self.source} mounted at {self.point}"


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (a space is ``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts listed in ``/proc/self/mountinfo`` text, in order (later ones mount over earlier ones)."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 6 or len(rest) < 2:
            continue
        options = tuple(fields[5].split(",")) + tuple(rest[2].split(",") if len(rest) > 2 else ())
        mounts.append(Mount(point=_unescape(fields[4]), fstype=rest[0], source=_unescape(rest[1]), options=options))
    return mounts


def mount_of(path: str | os.PathLike[str], mounts: list[Mount] | None = None) -> Mount | None:
    """The mount holding ``path`` (the longest, latest mount point that contains it), or None off Linux."""
    real = os.path.realpath(path)
    if mounts is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
                mounts = parse_mountinfo(fh.read())
        except OSError:
            return None
    best: Mount | None = None
    for mount in mounts:
        point = mount.point
        if not (real == point or real.startswith(point.rstrip("/") + "/")):
            continue
        if best is None or len(point) >= len(best.point):
            best = mount
    return best


def host_local_reason(mount: Mount) -> str | None:
    """Why this mount's locks only exclude processes on one host (by its type and options), or None."""
    local_only = [o for o in _HOST_LOCAL_OPTIONS.get(mount.fstype, ()) if o in mount.options]
    if local_only:
        return f"it is mounted with {', '.join(local_only)}, so its locks only exclude processes on the same host"
    base = mount.fstype.split(".", 1)
    if base[0] == "fuse" and len(base) == 2 and base[1] in _HOST_LOCAL_FUSE:
        return "a FUSE network filesystem: its locks only exclude processes on the same host"
    return None


@dataclass(frozen=True)
class LockProbe:
    """What :func:`probe_locks` found.

    Attributes
    ----------
    excludes
        True if ``flock`` on this filesystem keeps a second process out (and,
        as far as the mount options tell, processes on other hosts too).
    filesystem
        The filesystem, in words (type, source, mount point).
    reason
        Why ``excludes`` is False (empty when it is True).
    """

    excludes: bool
    filesystem: str
    reason: str = ""


def probe_locks(directory: str | os.PathLike[str]) -> LockProbe:
    """Find out, by trying, whether OS locks in ``directory`` exclude another process.

    The mount options are read first (NFS ``nolock``/``local_lock``, Lustre
    ``localflock``, CIFS ``nobrl`` and FUSE network filesystems lock only
    within one host). Then this process takes an exclusive ``flock`` on a
    fresh file in ``directory`` and a child process tries to take it too: the
    locks work only if the child is refused. ``directory`` must be writable.
    """
    folder = Path(directory)
    mount = mount_of(folder)
    name = mount.describe() if mount else f"the filesystem of {folder}"
    reason = host_local_reason(mount) if mount is not None else None
    if reason is not None:
        return LockProbe(False, name, reason)
    probe = folder / f".probe-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return LockProbe(False, name, f"flock fails there ({exc.strerror})")
        try:
            child = subprocess.run([sys.executable, "-I", "-S", "-c", _PROBE_CHILD, str(probe)],
                                   capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("could not run the lock probe's second process (%s); trusting flock on %s", exc, name)
            return LockProbe(True, name)
        if child.returncode == 0:
            return LockProbe(False, name, "a second process got the same exclusive flock: its locks do "
                                          "not exclude anything")
        if child.returncode == 20:
            return LockProbe(False, name, "flock fails in a second process")
        return LockProbe(True, name)
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass


def _record_path(locks_dir: Path) -> Path:
    return locks_dir / f"probe-{_HOST}.json"


def choose_lock_kind(locks_dir: str | os.PathLike[str], kind: str | None = None, *,
                     probe_dir: str | os.PathLike[str] | None = None, warn: bool = True) -> str:
    """The lock kind for a cache whose locks live in ``locks_dir``.

    An explicit ``kind`` (or ``$RELEASECACHE_LOCK_KIND``) is returned as is.
    ``"auto"`` probes the filesystem (:func:`probe_locks`) once per directory
    and host: in ``locks_dir`` if it exists, else in ``probe_dir`` (the cache
    directory: same filesystem, and nothing is left behind there). The result
    is remembered in this process and, once ``locks_dir`` exists, in
    ``<locks_dir>/probe-<host>.json`` (probed again if the directory moves to
    another filesystem). Where the locks do not exclude, ``"soft"`` is returned
    and one :class:`~releasecache.errors.LockFallbackWarning` naming the
    filesystem is given per process and directory. Where nothing can be probed
    (a read-only cache takes no locks), ``"posix"`` is returned.
    """
    wanted = resolve_lock_kind(kind)
    if wanted != "auto":
        return wanted
    folder = Path(locks_dir)
    where = folder if folder.is_dir() or probe_dir is None else Path(probe_dir)
    try:
        dev = os.stat(where).st_dev
    except OSError:
        return "posix"
    key = (str(folder.absolute()), dev)
    with _probe_guard:
        if key in _probed:
            return _probed[key]
        record = _read_record(folder, dev) if where == folder else None
        if record is None:
            try:
                found = probe_locks(where)
            except OSError as exc:  # not writable: nothing will be locked here anyway
                log.debug("no lock probe in %s: %s", where, exc)
                return "posix"
            record = {"format": _PROBE_FORMAT, "dev": dev, "excludes": found.excludes,
                      "filesystem": found.filesystem, "reason": found.reason, "when": time.time()}
            if where == folder:
                try:
                    atomic_write(_record_path(folder), json.dumps(record).encode(), durable=False)
                except OSError:
                    pass
        result = "posix" if record["excludes"] else "soft"
        _probed[key] = result
    if result == "soft" and warn:
        message = (f"the cache's locks in {folder} are on the {record['filesystem']}: {record['reason']}. "
                   "Using lease-based soft locks instead (set lock_kind or RELEASECACHE_LOCK_KIND to choose)")
        log.warning("%s", message)
        warn_user(message, LockFallbackWarning)
    return result


def _read_record(folder: Path, dev: int) -> dict[str, Any] | None:
    try:
        path = _record_path(folder)
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as fh:
            record = json.loads(fh.read(4096))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != _PROBE_FORMAT or record.get("dev") != dev:
        return None
    if not isinstance(record.get("excludes"), bool):
        return None
    record.setdefault("filesystem", str(folder))
    record.setdefault("reason", "")
    return record


__all__ = ["LOCK_CHOICES", "LOCK_KINDS", "LockProbe", "Mount", "choose_lock_kind", "host_local_reason", "mount_of",
           "parse_mountinfo", "probe_locks", "resolve_lock_kind"]
