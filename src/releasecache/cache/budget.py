"""A size budget for the blob store: least-recently-used eviction that never loses what is pinned.

With ``max_size`` set (``CloudCache(..., max_size="400GB")`` or
``RELEASECACHE_MAX_SIZE``), a download that would make the blobs exceed it
first evicts blobs, least recently used first, until the new file fits. It never
evicts:

* a blob listed by a **pinned** manifest: pins are explicit (:func:`pin`,
  ``releasecache pin 0.5.0``), and the cache's current manifest (the loaded one,
  else the one used last) is pinned implicitly;
* a blob whose lock is held (another process is downloading or verifying it);
* a blob being **read**: readers that hold a :func:`read_lease` (a shared
  ``flock`` on the blob) block its eviction; the eviction itself holds an
  exclusive ``flock`` while it removes the blob;
* a blob this process has handed out (``CloudCache.used_files()``).

A blob still linked from a version view is evicted only together with those view
links: each link is removed first (an atomic unlink), then the blob, so no
reader ever finds a link to a missing blob.

Use is recorded cheaply: loading a manifest writes ``.usage/<manifest name>``
(its mtime is the last use) at most once per :data:`USAGE_INTERVAL`; a cache hit
writes nothing. A blob's last use is the newest usage stamp of the manifests
that list it, then its publish time. If the budget cannot be met without
touching pinned or busy blobs, nothing is evicted and the download is refused
with a :class:`~releasecache.errors.StorageError` before any byte is written.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ..config import DEFAULT_USAGE_INTERVAL
from ..errors import StorageError
from ..store.views import downloaded_manifests
from ..utils import atomic_write, human_bytes

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger("releasecache")

#: Seconds between two writes of one manifest's usage stamp.
USAGE_INTERVAL = DEFAULT_USAGE_INTERVAL

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40, "pib": 2**50}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: str | int | float) -> int:
    """Bytes from ``"400GB"``, ``"1.5 TiB"``, ``"500M"`` or a number (decimal units; ``i`` for binary).

    Raises
    ------
    ValueError
        If the text is not a size.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return int(value)
    match = _SIZE.match(str(value))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(f"{value!r} is not a size (examples: 400GB, 1.5TiB, 500M)")
    return int(float(match.group(1)) * _UNITS[unit])


# -- usage stamps and pins --------------------------------------------------------------------


def _usage_dir(store: "Store") -> Path:
    return store.root / ".usage"


def _pins_dir(store: "Store") -> Path:
    return store.root / ".pins"


def _plain_name(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"{name!r} is not a manifest file name")
    return name


def touch_usage(store: "Store", manifest_name: str, *, interval: float = USAGE_INTERVAL,
                now: float | None = None) -> bool:
    """Record that ``manifest_name`` was used, unless that was recorded less than ``interval`` ago.

    One ``stat`` when nothing is due; returns True if the stamp was written.
    Best effort: a read-only cache records nothing.
    """
    if store.read_only:
        return False
    now = time.time() if now is None else now
    path = _usage_dir(store) / _plain_name(manifest_name)
    try:
        if now - os.stat(path).st_mtime < interval:
            return False
    except FileNotFoundError:
        pass
    except OSError:
        return False
    try:
        path.parent.mkdir(exist_ok=True)
        _stamp(path, now)
        return True
    except OSError as exc:
        log.debug("cannot record the use of %s: %s", manifest_name, exc)
        return False


def _stamp(path: Path, now: float) -> None:
    """Set the stamp's mtime to ``now``, also when another user of a shared cache wrote it."""
    try:
        with open(path, "a"):
            pass
        os.utime(path, (now, now))  # explicit times: only the owner may
        return
    except PermissionError:
        pass
    try:
        os.utime(path, None)  # "now": write permission is enough
        return
    except OSError:
        pass
    atomic_write(path, b"")  # neither: a stamp of our own in its place (the directory is writable)
    os.utime(path, (now, now))


def read_usage(store: "Store") -> dict[str, float]:
    """``{manifest name: time of last recorded use}``."""
    out: dict[str, float] = {}
    try:
        for entry in os.scandir(_usage_dir(store)):
            if entry.is_file(follow_symlinks=False):
                out[entry.name] = entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        pass
    return out


def pin(store: "Store", manifest_name: str) -> None:
    """Pin a manifest: its blobs are never evicted (until :func:`unpin`)."""
    path = _pins_dir(store) / _plain_name(manifest_name)
    try:
        path.parent.mkdir(exist_ok=True)
        path.touch()
    except OSError as exc:
        raise StorageError(exc.errno or errno.EIO, f"cannot pin {manifest_name} in {store.root}: {exc}") from None


def unpin(store: "Store", manifest_name: str) -> bool:
    """Remove a pin; True if there was one."""
    try:
        os.unlink(_pins_dir(store) / _plain_name(manifest_name))
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(exc.errno or errno.EIO, f"cannot unpin {manifest_name}: {exc}") from None


def pinned(store: "Store") -> list[str]:
    """The explicitly pinned manifest names, sorted."""
    try:
        return sorted(e.name for e in os.scandir(_pins_dir(store)) if e.is_file(follow_symlinks=False))
    except OSError:
        return []


# -- read leases ------------------------------------------------------------------------------


@contextmanager
def read_lease(path: str | os.PathLike[str]) -> Iterator[int]:
    """Hold a blob open with a shared ``flock`` while reading it: eviction skips it meanwhile.

    Yields the open file descriptor (read-only).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)


def lease_open_file(fobj: Any) -> Any:
    """Put a read lease (a shared ``flock``) on an open local file; it lasts until the file is closed."""
    fcntl.flock(fobj.fileno(), fcntl.LOCK_SH)
    return fobj


def _being_read(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True


# -- reservations: downloads in flight in this process -----------------------------------------

_RESERVE_LOCK = threading.Lock()
_RESERVED: dict[str, dict[str, int]] = {}


@contextmanager
def reserving(store: "Store", file_hash: str, size: int) -> Iterator[dict[str, int]]:
    """Hold the process's budget lock; yields ``{hash: size}`` of the other downloads in flight in ``store``.

    Pass it to :func:`evict` as ``in_flight``. If the body returns normally (it
    decided the file fits), ``size`` stays reserved until :func:`release`; on
    an exception nothing is reserved.
    """
    key = str(store.root)
    with _RESERVE_LOCK:
        pending = _RESERVED.setdefault(key, {})
        yield dict(pending)
        pending[file_hash] = size


def release(store: "Store", file_hash: str) -> None:
    """Give back a reservation once its download has finished (or failed)."""
    with _RESERVE_LOCK:
        _RESERVED.get(str(store.root), {}).pop(file_hash, None)


# -- eviction ---------------------------------------------------------------------------------


@dataclass
class Candidate:
    """A blob eviction may remove: its hash, size, last use and the manifests that list it."""

    file_hash: str
    size: int
    last_used: float
    manifests: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"file_hash": self.file_hash, "size": self.size, "last_used": self.last_used,
                "manifests": self.manifests}


@dataclass
class EvictionReport:
    """What an eviction removed (or, in a dry run, would remove).

    Attributes
    ----------
    max_size, incoming
        The budget and the bytes about to be added.
    total_before, total_after
        Bytes of the blob store before and after.
    evicted
        Blobs removed (or that would be), least recently used first.
    removed_links
        View links removed with them (paths relative to the cache directory).
    busy
        Blobs skipped because their lock was held or a reader held a lease.
    protected_bytes
        Bytes of blobs that pinned manifests (or this process) protect.
    fits
        True if ``total_after + incoming <= max_size``.
    """

    max_size: int
    incoming: int
    total_before: int
    total_after: int
    dry_run: bool
    pinned: list[str]
    evicted: list[Candidate] = field(default_factory=list)
    removed_links: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    protected_bytes: int = 0

    @property
    def fits(self) -> bool:
        return self.total_after + self.incoming <= self.max_size

    @property
    def bytes_freed(self) -> int:
        return sum(c.size for c in self.evicted)

    def summary(self) -> str:
        """A report for people."""
        human = human_bytes
        verb = "would evict" if self.dry_run else "evicted"
        lines = [f"budget {human(self.max_size)}: blobs {human(self.total_before)}"
                 + (f" + {human(self.incoming)} incoming" if self.incoming else "")
                 + f"; {verb} {len(self.evicted)} blobs ({human(self.bytes_freed)}), "
                   f"{human(self.total_after)} left; pinned: {', '.join(self.pinned) or 'none'} "
                   f"({human(self.protected_bytes)} protected)"]
        for c in self.evicted:
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(c.last_used)) if c.last_used else "never"
            lines.append(f"  {verb.split()[-1]} {c.file_hash[:16]}… {human(c.size):>10}  last used {when}  "
                         f"({', '.join(c.manifests) or 'no manifest'})")
        for link in self.removed_links:
            lines.append(f"  {'would remove' if self.dry_run else 'removed'} view link {link}")
        if self.busy:
            lines.append(f"  skipped {len(self.busy)} busy blobs (locked or being read)")
        if not self.fits:
            lines.append("  the budget cannot be met without pinned or busy blobs")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"max_size": self.max_size, "incoming": self.incoming, "total_before": self.total_before,
                "total_after": self.total_after, "dry_run": self.dry_run, "fits": self.fits,
                "pinned": self.pinned, "bytes_freed": self.bytes_freed,
                "evicted": [c.to_dict() for c in self.evicted], "removed_links": self.removed_links,
                "busy": self.busy, "protected_bytes": self.protected_bytes}


def _links_to(store: "Store", views: list[tuple[str, str]]) -> list[Path]:
    """The view entries (``(view dir, path)`` of downloaded manifests) that exist."""
    paths = [store.root / view_dir / relative for view_dir, relative in views]
    return [p for p in paths if os.path.lexists(p)]


def evict(store: "Store", max_size: int, *, incoming: int = 0, pinned_names: Iterable[str] = (),
          protect: Iterable[str] = (), dry_run: bool = False, in_flight: dict[str, int] | None = None) -> EvictionReport:
    """Evict least-recently-used blobs until ``incoming`` more bytes fit in ``max_size``.

    Parameters
    ----------
    store
        The blob store.
    max_size
        The budget in bytes for the store's own blobs (read-only layers do not count).
    incoming
        Bytes about to be downloaded.
    pinned_names
        Manifests whose blobs must stay, besides the explicit pins (e.g. the current one).
    protect
        Further blob hashes that must stay (e.g. the files this process handed out).
    dry_run
        Only report what would go.
    in_flight
        ``{hash: size}`` of other downloads under way (:func:`reserving`); those
        not yet published count as incoming, the published ones count once, as blobs.
    """
    blobs: dict[str, tuple[Path, os.stat_result]] = {}
    for file_hash, path in store.iter_blobs():
        try:
            blobs[file_hash] = (path, os.lstat(path))
        except OSError:
            continue
    total = sum(st.st_size for _, st in blobs.values())
    incoming += sum(n for h, n in (in_flight or {}).items() if h not in blobs)
    names = sorted({*pinned(store), *pinned_names})
    report = EvictionReport(max_size, incoming, total, total, dry_run, names)
    if total + incoming <= max_size:
        return report
    manifests = downloaded_manifests(store)
    protected = set(protect)
    listed_by: dict[str, list[str]] = {}
    views: dict[str, list[tuple[str, str]]] = {}
    for name, manifest in manifests.items():
        for entry in manifest.entries():
            listed_by.setdefault(entry.file_hash, []).append(name)
            views.setdefault(entry.file_hash, []).append((manifest.view_dir_name, entry.relative_path))
            if name in names:
                protected.add(entry.file_hash)
    usage = read_usage(store)
    candidates = []
    for file_hash, (_, st) in blobs.items():
        if file_hash in protected:
            report.protected_bytes += st.st_size
            continue
        users = sorted(listed_by.get(file_hash, []))
        last = max((usage.get(n, 0.0) for n in users), default=0.0)
        candidates.append((last, st.st_mtime, file_hash, Candidate(file_hash, st.st_size, last, users)))
    candidates.sort(key=lambda c: (c[0], c[1], c[2]))
    if total - sum(c[3].size for c in candidates) + incoming > max_size:
        return report  # cannot fit even with every candidate gone: evict nothing in vain
    for _, _, file_hash, candidate in candidates:
        if report.total_after + incoming <= max_size:
            break
        path = blobs[file_hash][0]
        with store.try_lock(file_hash) as taken:
            if not taken:
                report.busy.append(file_hash)
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # removed meanwhile (a concurrent gc)
            try:
                if _being_read(fd):
                    report.busy.append(file_hash)
                    continue
                links = _links_to(store, views.get(file_hash, []))
                if not dry_run:
                    for link in links:  # the views first: no link ever points at a missing blob
                        try:
                            os.unlink(link)
                        except FileNotFoundError:
                            pass
                    store.remove_blob(file_hash)
            finally:
                os.close(fd)
        report.removed_links += [str(p.relative_to(store.root)) for p in links]
        report.evicted.append(candidate)
        report.total_after -= candidate.size
    if not dry_run and report.evicted:
        log.info("%s", report.summary().splitlines()[0])
    return report


__all__ = ["Candidate", "EvictionReport", "USAGE_INTERVAL", "evict", "parse_size", "pin", "pinned",
           "lease_open_file", "read_lease", "read_usage", "touch_usage", "unpin"]
