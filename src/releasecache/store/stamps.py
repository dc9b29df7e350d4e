"""Verified-at-publish stamps: the cheap half of ``verify(mode="fast")``.

When a blob is published (its blake2b just matched), the store writes
``.stamps/<h[:2]>/<h>``: a small JSON record of the blob's ``size``,
``mtime_ns`` and inode (``ino``) as they were right after the rename. A fast
verify trusts a blob whose current ``(size, mtime_ns, ino)`` still equal its
stamp, and re-hashes any blob whose stamp is missing or differs (then stamps it
again if it is intact).

Why a stamp file and not an extended attribute: xattrs are unsupported or
dropped on several filesystems and by common copy tools (NFSv3, some FUSE
mounts, ``cp`` without ``--preserve=xattr``), while a file works everywhere
the cache does. A stamp records the inode, so a copied or restored cache
(new inodes) is re-hashed once on its next fast verify, which is what one wants.

Each stamp also says when the blob's bytes were last hashed (``verified``,
epoch seconds): at publish (the bytes were hashed as they arrived) and at each
full verification. An incremental ``verify(mode="full")`` hashes the blobs
verified longest ago first, so it can be stopped (by a time or byte budget, or
by a kill) and continue where it stopped.

What the fast mode cannot see: bytes that rot in place without any change of
size, mtime or inode (media errors, a tool that restores mtimes). ``mode="full"``
hashes every byte.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..utils import atomic_write

STAMP_FORMAT = 1


def stamp_path(stamps_dir: Path, file_hash: str) -> Path:
    return stamps_dir / file_hash[:2] / file_hash


def stamp_of(st: os.stat_result, verified: float | None = None) -> dict[str, Any]:
    return {"format": STAMP_FORMAT, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino,
            "verified": time.time() if verified is None else verified}


def write_stamp(stamps_dir: Path, file_hash: str, blob: Path, *, verified: float | None = None,
                mode: int | None = None) -> bool:
    """Record the stamp of a blob whose bytes were just hashed (at ``verified``, default now).

    ``mode`` is the stamp file's permission bits (default: what the umask allows).
    Best effort: returns False on any OS error.
    """
    try:
        st = os.lstat(blob)
        atomic_write(stamp_path(stamps_dir, file_hash), json.dumps(stamp_of(st, verified)).encode(),
                     durable=False, mode=mode)
        return True
    except OSError:
        return False


def last_verified(stamp: dict[str, Any] | None) -> float:
    """When the stamped blob's bytes were last hashed (0.0 if never recorded)."""
    try:
        return float((stamp or {}).get("verified") or 0.0)
    except (TypeError, ValueError):
        return 0.0


# Opening a stamp never follows a link and never blocks (a FIFO planted in its place reads as empty).
_STAMP_OPEN = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_stamp(stamps_dir: Path | str, file_hash: str) -> dict[str, Any] | None:
    """The blob's stamp, or None if it has none (or one that is not a small JSON object in a regular file).

    Three system calls (open, read, close) and string paths: a fast verify reads 100,000 of them.
    """
    try:
        fd = os.open(f"{stamps_dir}/{file_hash[:2]}/{file_hash}", _STAMP_OPEN)
    except OSError:
        return None
    try:
        data = os.read(fd, 4097)
    except OSError:  # a directory
        return None
    finally:
        os.close(fd)
    if len(data) > 4096 or not data.startswith(b"{"):  # not a stamp (a device, a FIFO, something else)
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def stamp_matches(stamp: dict[str, Any] | None, st: os.stat_result) -> bool:
    """True if the blob looks exactly as it did when it was verified."""
    if not stamp or stamp.get("format") != STAMP_FORMAT:
        return False
    return (stamp.get("size"), stamp.get("mtime_ns"), stamp.get("ino")) == (st.st_size, st.st_mtime_ns, st.st_ino)


def remove_stamp(stamps_dir: Path, file_hash: str) -> None:
    try:
        os.unlink(stamp_path(stamps_dir, file_hash))
    except OSError:
        pass
