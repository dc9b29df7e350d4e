"""Resume state: which byte ranges of a partial download are on disk, in a sidecar next to it.

The sidecar is advisory: a lost or stale one only costs a restart, because the
full blake2b decides whether the bytes are published.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from typing import TYPE_CHECKING, Iterable

from ..errors import StorageError
from ..utils import atomic_write

if TYPE_CHECKING:
    from ..manifest import FileEntry
    from ..store import Store

log = logging.getLogger("releasecache")

SIDECAR_FORMAT = 1


def merge(ranges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Merge half-open ``[start, end)`` ranges."""
    out: list[list[int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def covered(ranges: list[list[int]], start: int, end: int) -> bool:
    """True if ``[start, end)`` lies inside one of ``ranges``."""
    return any(a <= start and end <= b for a, b in ranges)


def read_sidecar(store: "Store", entry: "FileEntry") -> dict | None:
    """The download's resume state if it matches ``entry`` and the partial file, else None."""
    h = entry.file_hash
    try:
        with open(store.sidecar_path(h), "rb") as fh:
            state = json.loads(fh.read(1 << 20))
        st = os.lstat(store.partial_path(h))
        if not stat.S_ISREG(st.st_mode):  # a planted link: never write through it
            log.warning("%s is not a regular file; starting over", store.partial_path(h))
            return None
        size = st.st_size
    except (OSError, ValueError):
        return None
    if not (
        isinstance(state, dict)
        and state.get("format") == SIDECAR_FORMAT
        and state.get("url") == entry.url
        and state.get("version_id") == entry.version_id
        and state.get("file_hash") == h
        and isinstance(state.get("size"), int)
        and state["size"] == size
        and (entry.size is None or entry.size == size)
        and isinstance(state.get("done"), list)
    ):
        log.info("%s: partial download does not match the manifest entry; starting over", entry.relative_path)
        return None
    try:
        state["done"] = merge((int(a), int(b)) for a, b in state["done"] if 0 <= int(a) < int(b) <= size)
    except (TypeError, ValueError):
        return None
    return state

def write_sidecar(store: "Store", entry: "FileEntry", size: int, done: list[list[int]]) -> None:
    """Record the byte ranges ``done`` of the partial download of ``entry``."""
    record = {
        "format": SIDECAR_FORMAT,
        "url": entry.url,
        "version_id": entry.version_id,
        "file_hash": entry.file_hash,
        "size": size,
        "done": done,
    }
    try:
        # Advisory: a lost or stale sidecar only costs a restart, since the full hash decides.
        atomic_write(store.sidecar_path(entry.file_hash), json.dumps(record).encode(), durable=False)
    except OSError as exc:
        raise StorageError.from_os_error(exc, f"cannot record progress of {entry.relative_path}",
                                         file_hash=entry.file_hash, version_id=entry.version_id or None) from None
