"""Per-blob inter-process locks that name their holder and never block forever.

Two kinds, chosen per cache with ``lock_kind`` (or ``$RELEASECACHE_LOCK_KIND``);
every process sharing one cache directory must use the same kind. The default,
``"auto"``, probes the filesystem once per cache directory and host (see
:func:`probe_locks`) and uses ``"posix"`` where OS locks really exclude other
processes and ``"soft"`` where they do not, with one
:class:`~releasecache.errors.LockFallbackWarning` naming the filesystem.

``"posix"`` (the default)
    An OS lock (``flock``) on ``.locks/<hash>.lock`` through :class:`filelock.FileLock`.
    The kernel (or the NFS lock manager) drops it when its process dies, so a
    crashed downloader never blocks anyone. Use it on local disks, NFSv4, NFSv3
    with ``lockd``, Lustre mounted with ``-o flock``, GPFS/Spectrum Scale, CephFS,
    BeeGFS.

``"soft"``
    An existence lock (``O_CREAT|O_EXCL`` marker file ``.locks/<hash>.lease``) through
    :class:`filelock.SoftFileLock`, for filesystems whose OS locks do not work
    across hosts or at all: NFS mounted ``nolock`` / ``local_lock=all``, Lustre
    with ``localflock`` or ``noflock``, FUSE filesystems (sshfs, s3fs, gcsfuse),
    some SMB shares. A marker left by a crashed process is broken by a *lease*:
    the holder refreshes its ``.owner`` file every ``lease / 4`` seconds from a
    background thread; a waiter breaks the lock at once if the holder ran on
    this host and its process is gone, and otherwise once it has watched the
    owner record stay unchanged for ``lease`` seconds (timed on the waiter's own
    monotonic clock, so clock skew between hosts does not matter).

Either way, after acquiring, the holder writes ``.locks/<hash>.owner`` (pid,
host, start time, kind) so that waiters can say who they are waiting for, in a
log message while they wait and in :class:`~releasecache.errors.LockTimeoutError`.
The owner record is removed just before the lock is released.

Correctness of the cache never rests on the lock alone: blobs are published by
an atomic rename only after their hash matched, so a lost or broken lock costs
at most a duplicate download.

Which kind ``"auto"`` becomes is decided in :mod:`releasecache.store.lock_probe`
(its names are re-exported here).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from ..config import DEFAULT_LOCK_LEASE
from ..errors import LockTimeoutError, StorageError
from ..utils import atomic_write, file_mode
from .lock_probe import (
    LOCK_CHOICES,
    LOCK_KINDS,
    LockProbe,
    Mount,
    choose_lock_kind,
    host_local_reason,
    mount_of,
    parse_mountinfo,
    probe_locks,
    resolve_lock_kind,
)

log = logging.getLogger("releasecache")

#: Seconds a soft lock's owner may go without a heartbeat before a waiter breaks it.
DEFAULT_LEASE = DEFAULT_LOCK_LEASE
#: How often a waiter wakes to re-check the holder (and log again after ``_LOG_EVERY``).
_POLL = 0.25
_LOG_EVERY = 60.0
_HOST = socket.gethostname()


def _process_start(pid: int) -> str | None:
    """A token that changes when a pid is reused (Linux: the start time in /proc), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        return data.rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError, ValueError):
        return None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    if start is not None:
        now = _process_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
    return True


@dataclass(frozen=True)
class LockOwner:
    """Who holds a blob lock, as written in ``.locks/<hash>.owner``."""

    pid: int
    host: str
    since: float
    kind: str
    start: str | None = None
    token: str = ""

    def alive(self) -> bool | None:
        """True/False if the holder is on this host and running or gone; None if it is on another host."""
        if self.host != _HOST:
            return None
        return _pid_alive(self.pid, self.start)

    def describe(self) -> str:
        age = max(0.0, time.time() - self.since)
        state = {True: "running", False: "no longer running", None: "on another host"}[self.alive()]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on host {self.host} ({state}), holding it since {when} ({age:.0f} s)"


def read_owner(path: Path) -> LockOwner | None:
    """The owner record at ``path``, or None if absent or unreadable."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        with open(path, "rb") as fh:
            raw = json.loads(fh.read(4096))
        return LockOwner(pid=int(raw["pid"]), host=str(raw["host"]), since=float(raw["since"]),
                         kind=str(raw.get("kind", "")), start=raw.get("start"), token=str(raw.get("token", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class BlobLock:
    """The lock of one blob. Use :meth:`acquire` / :meth:`release`, or ``with``.

    Parameters
    ----------
    lock_path, owner_path
        ``.locks/<hash>.lock`` and ``.locks/<hash>.owner``.
    kind
        ``"posix"``, ``"soft"`` or ``"auto"`` (see the module documentation; ``"auto"`` probes
        the lock directory's filesystem once, see :func:`choose_lock_kind`).
    lease
        Soft locks only: seconds without a heartbeat after which the lock is broken.
    what
        Names the blob in messages.
    """

    def __init__(self, lock_path: Path, owner_path: Path, *, kind: str | None = None,
                 lease: float = DEFAULT_LEASE, what: str = "blob") -> None:
        self.kind = choose_lock_kind(Path(lock_path).parent, kind)
        # A soft lock's marker has its own name: a cache once used with OS locks keeps its
        # (never deleted) .lock files, which must not read as markers held by nobody.
        self.lock_path = Path(lock_path).with_suffix(".lease") if self.kind == "soft" else Path(lock_path)
        self.owner_path = Path(owner_path)
        self.lease = float(lease)
        self.what = what
        self._token = uuid.uuid4().hex
        self._held = False
        self._beat_stop: threading.Event | None = None
        self._beat_thread: threading.Thread | None = None
        # An explicit mode: older filelock versions give lock files 0644 whatever the umask,
        # which locks the other members of a group-shared cache out of them.
        if self.kind == "soft":
            self._lock: Any = filelock.SoftFileLock(str(self.lock_path), timeout=0, mode=file_mode())
        else:
            self._lock = filelock.FileLock(str(self.lock_path), timeout=0, mode=file_mode())

    # -- acquiring --------------------------------------------------------------

    def _try_once(self) -> bool:
        try:
            self._lock.acquire(timeout=0, poll_interval=0.01)
            return True
        except filelock.Timeout:
            return False
        except NotImplementedError as exc:
            raise StorageError(errno.ENOLCK, f"{self.lock_path}: this filesystem has no working OS locks ({exc}); "
                               "open the cache with lock_kind='soft' (or RELEASECACHE_LOCK_KIND=soft)") from None
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                raise StorageError(exc.errno, f"{self.lock_path}: locking is not supported here ({exc.strerror}); "
                                   "open the cache with lock_kind='soft' (or RELEASECACHE_LOCK_KIND=soft)") from None
            raise StorageError.from_os_error(exc, f"cannot lock {self.lock_path}") from None

    def acquire(self, timeout: float | None = None, *, blocking: bool = True,
                cancel: threading.Event | None = None) -> bool:
        """Take the lock; wait up to ``timeout`` seconds (None: forever) if ``blocking``.

        Returns False when ``blocking`` is False and the lock is held elsewhere,
        or when ``cancel`` is set while waiting (Ctrl-C: stop waiting at once).

        Raises
        ------
        LockTimeoutError
            When the wait exceeds ``timeout``; the message names the holder.
        """
        self._refuse_planted_link()
        deadline = None if timeout is None else time.monotonic() + timeout
        started = time.monotonic()
        next_log = 0.0
        watched: tuple[Any, float] | None = None  # (owner identity, first seen at, monotonic)
        while True:
            if self._try_once():
                self._on_acquired()
                return True
            if not blocking or (cancel is not None and cancel.is_set()):
                return False
            now = time.monotonic()
            owner = read_owner(self.owner_path)
            if self.kind == "soft":
                watched = self._maybe_break(owner, watched, now)
            if now >= next_log:
                who = owner.describe() if owner else "a process that has not recorded itself yet"
                log.info("waiting for %s: it is being downloaded by %s", self.what, who)
                next_log = now + _LOG_EVERY
            if deadline is not None and now >= deadline:
                who = owner.describe() if owner else "an unknown process (no owner record)"
                hint = ("the lock dies with its process, so the holder is alive: check whether it hung"
                        if self.kind == "posix" else
                        f"a soft lock is broken once its holder misses its heartbeat for {self.lease:.0f} s")
                raise LockTimeoutError(
                    f"waited {now - started:.0f} s for {self.what}, held by {who} (lock {self.lock_path}); "
                    f"{hint}; raise lock_timeout to wait longer", path=str(self.lock_path)
                )
            sleep = _POLL if deadline is None else max(0.0, min(_POLL, deadline - now))
            if cancel is not None:
                cancel.wait(sleep)
            else:
                time.sleep(sleep)

    def _refuse_planted_link(self) -> None:
        """A lock file that is a symlink is never ours: remove the link, never write through it."""
        try:
            st = os.lstat(self.lock_path)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            log.warning("%s is a symbolic link, not a lock file; removing the link", self.lock_path)
            try:
                os.unlink(self.lock_path)
            except OSError:
                pass

    def _maybe_break(self, owner: LockOwner | None, watched: tuple[Any, float] | None,
                     now: float) -> tuple[Any, float] | None:
        """Soft locks: break the marker of a dead holder, or one whose owner record stopped changing."""
        marker = _identity(self.lock_path)
        if marker is None:
            return None
        if owner is not None and owner.alive() is False:
            self._break(marker, f"its holder, {owner.describe()}, is gone")
            return None
        key = (marker, _identity(self.owner_path))
        if watched is None or watched[0] != key:
            return (key, now)
        if now - watched[1] >= self.lease:
            who = owner.describe() if owner else "an unknown process"
            self._break(marker, f"its holder, {who}, missed its heartbeat for {self.lease:.0f} s")
            return None
        return watched

    def _break(self, marker: tuple[int, int, int], why: str) -> None:
        if _identity(self.lock_path) != marker:
            return  # changed since we judged it: someone else took or broke it
        log.warning("breaking the lock of %s: %s", self.what, why)
        for path in (self.lock_path, self.owner_path):
            try:
                os.unlink(path)
            except OSError:
                pass

    def _on_acquired(self) -> None:
        self._held = True
        self._write_owner()
        if self.kind == "soft" and self.lease > 0:
            self._beat_stop = threading.Event()
            self._beat_thread = threading.Thread(target=self._heartbeat, name="rc-lock-heartbeat", daemon=True)
            self._beat_thread.start()

    def _write_owner(self, beat: int = 0) -> None:
        pid = os.getpid()
        record = {"pid": pid, "host": _HOST, "since": time.time() if beat == 0 else self._since,
                  "kind": self.kind, "start": _process_start(pid), "token": self._token, "beat": beat}
        if beat == 0:
            self._since = record["since"]
        try:
            atomic_write(self.owner_path, json.dumps(record).encode(), durable=False)
        except OSError as exc:  # advisory: a full disk must not fail the download here
            log.debug("could not write lock owner record %s: %s", self.owner_path, exc)

    def _heartbeat(self) -> None:
        beat = 0
        assert self._beat_stop is not None
        while not self._beat_stop.wait(self.lease / 4):
            beat += 1
            self._write_owner(beat)

    # -- releasing --------------------------------------------------------------

    def release(self) -> None:
        """Drop the lock (removing the owner record first)."""
        if not self._held:
            return
        self._held = False
        if self._beat_stop is not None:
            self._beat_stop.set()
            if self._beat_thread is not None:
                self._beat_thread.join()
            self._beat_stop = self._beat_thread = None
        owner = read_owner(self.owner_path)
        if owner is not None and owner.token == self._token:
            try:
                os.unlink(self.owner_path)
            except OSError:
                pass
        try:
            self._lock.release()
        except OSError as exc:
            log.warning("could not release %s: %s", self.lock_path, exc)

    def __enter__(self) -> "BlobLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["BlobLock", "LockOwner", "LockProbe", "Mount", "LOCK_KINDS", "LOCK_CHOICES", "DEFAULT_LEASE",
           "choose_lock_kind", "host_local_reason", "mount_of", "parse_mountinfo", "probe_locks", "read_owner",
           "resolve_lock_kind"]
