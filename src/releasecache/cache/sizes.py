"""File sizes remembered by content hash, so progress has a total without asking the remote twice.

Real release manifests carry no sizes. A plan learns them from the store (a
blob's size), a HEAD request, or a download's first response, and keeps them
in ``<cache>/sizes.json`` (``{"<blake2b>": bytes}``). Content decides the size,
so one record serves every version that lists the same file. The file is
advisory: losing it, or an update lost to a concurrent writer, only costs
another HEAD.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..store import Store
from ..utils import atomic_write

log = logging.getLogger("releasecache")

FILE_NAME = "sizes.json"
_MAX_BYTES = 64 << 20  # a damaged or hostile file must not be read without bound


def sizes_path(store: Store) -> Path:
    """Where the sizes are remembered."""
    return store.root / FILE_NAME


def load_sizes(store: Store) -> dict[str, int]:
    """Remembered sizes (empty if none, or if the file is unreadable)."""
    try:
        with open(sizes_path(store), "rb") as fh:
            raw = json.loads(fh.read(_MAX_BYTES))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {h: n for h, n in raw.items() if isinstance(h, str) and isinstance(n, int) and n >= 0}


def remember_sizes(store: Store, sizes: dict[str, int]) -> None:
    """Add ``sizes`` to the remembered ones (nothing in a read-only cache; failures only log)."""
    if store.read_only or not sizes:
        return
    known = load_sizes(store)
    if all(known.get(h) == n for h, n in sizes.items()):
        return
    known.update(sizes)
    try:
        atomic_write(sizes_path(store), json.dumps(known, separators=(",", ":")).encode(), durable=False)
    except OSError as exc:
        log.info("could not remember file sizes in %s: %s", store.root, exc)


__all__ = ["FILE_NAME", "load_sizes", "remember_sizes", "sizes_path"]
