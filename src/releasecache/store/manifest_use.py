"""When each manifest was last used, recorded in the cache itself (for every user of it).

``gc`` keeps the blobs of every manifest that anybody used within a window, and
a size budget evicts the least recently used manifests first; both need to know
when each manifest was last used, by whom, in *this* cache directory (not in
one user's home). The record lives next to the blobs::

    <cache>/.usage/<manifest file name>.json
    {"format": 1, "manifest": "<name>", "project": "<project>", "first_used": <epoch s>,
     "last_used": <epoch s>, "users": {"<uid>@<host>": <epoch s>, ...}}

A use is recorded when a manifest is loaded (and again when files of it are
fetched, at most once per :data:`MIN_INTERVAL` seconds per process and
manifest, so a busy job array does not rewrite the file on every file). Each
write replaces the record atomically; two processes racing lose at most one
of two nearly equal timestamps. Recording is best effort: a read-only cache
(or a layer) records nothing, and a failure to record never fails a download.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils import atomic_write

log = logging.getLogger("releasecache")

USAGE_DIR = ".usage"
USAGE_FORMAT = 1
#: Seconds between two records of the same manifest by one process.
MIN_INTERVAL = 600.0
_recent: dict[tuple[str, str], float] = {}  # (cache root, manifest name) -> monotonic time recorded
_guard = threading.Lock()


@dataclass(frozen=True)
class ManifestUse:
    """When one manifest was used in this cache.

    Attributes
    ----------
    name
        The manifest's file name (as in ``manifests/``).
    last_used, first_used
        Epoch seconds of the latest and the first recorded use (any user).
    users
        ``"<uid>@<host>"`` -> epoch seconds of that user's latest use.
    """

    name: str
    last_used: float
    first_used: float
    project: str | None = None
    users: dict[str, float] = field(default_factory=dict)

    def age_days(self, now: float | None = None) -> float:
        return max(0.0, ((time.time() if now is None else now) - self.last_used) / 86400)


def usage_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / USAGE_DIR


def usage_path(root: str | os.PathLike[str], manifest_name: str) -> Path:
    if "/" in manifest_name or manifest_name in ("", ".", "..") or "\x00" in manifest_name:
        raise ValueError(f"not a manifest file name: {manifest_name!r}")
    return usage_dir(root) / f"{manifest_name}.json"


def _user() -> str:
    return f"{os.getuid() if hasattr(os, 'getuid') else 0}@{socket.gethostname()}"


def read_use(root: str | os.PathLike[str], manifest_name: str) -> ManifestUse | None:
    """The usage record of one manifest, or None if it was never recorded (or is unreadable)."""
    path = usage_path(root, manifest_name)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as fh:
            raw = json.loads(fh.read(1 << 20))
        users = raw.get("users") or {}
        return ManifestUse(name=manifest_name, last_used=float(raw["last_used"]),
                           first_used=float(raw.get("first_used", raw["last_used"])),
                           project=raw.get("project"),
                           users={str(k): float(v) for k, v in users.items()} if isinstance(users, dict) else {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def all_uses(root: str | os.PathLike[str]) -> dict[str, ManifestUse]:
    """Every recorded manifest use in the cache at ``root``, by manifest name."""
    folder = usage_dir(root)
    out: dict[str, ManifestUse] = {}
    if folder.is_symlink() or not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        if path.suffix != ".json" or path.name.startswith("."):
            continue
        use = read_use(root, path.name[: -len(".json")])
        if use is not None:
            out[use.name] = use
    return out


def record_use(root: str | os.PathLike[str], manifest_name: str, *, project: str | None = None,
               now: float | None = None, force: bool = False, writer: Any = None) -> bool:
    """Record that this process uses ``manifest_name`` now. Returns True if a record was written.

    Skipped (False) when this process recorded the same manifest less than
    :data:`MIN_INTERVAL` seconds ago (unless ``force``), or when the cache
    cannot be written. ``writer(path, data)`` writes the file atomically (the
    store's writer, which gives it the cache's permissions); default: a plain
    atomic replace.
    """
    key = (str(Path(root).absolute()), manifest_name)
    mono = time.monotonic()
    with _guard:
        last = _recent.get(key)
        if not force and last is not None and mono - last < MIN_INTERVAL:
            return False
        _recent[key] = mono
    stamp = time.time() if now is None else now
    path = usage_path(root, manifest_name)
    old = read_use(root, manifest_name)
    users = dict(old.users) if old else {}
    users[_user()] = stamp
    record = {"format": USAGE_FORMAT, "manifest": manifest_name, "project": project or (old.project if old else None),
              "first_used": min(old.first_used, stamp) if old else stamp,
              "last_used": max(old.last_used, stamp) if old else stamp, "users": users}
    data = json.dumps(record, indent=1, sort_keys=True).encode()
    try:
        if writer is not None:
            writer(path, data)
        else:
            path.parent.mkdir(exist_ok=True)
            atomic_write(path, data, durable=False)
        return True
    except OSError as exc:
        log.debug("could not record the use of %s in %s: %s", manifest_name, root, exc)
        with _guard:
            _recent.pop(key, None)
        return False


def forget_recent() -> None:
    """Forget which uses this process recorded (tests; a process that changes its clock)."""
    with _guard:
        _recent.clear()


__all__ = ["ManifestUse", "USAGE_DIR", "MIN_INTERVAL", "all_uses", "forget_recent", "read_use", "record_use",
           "usage_dir", "usage_path"]
