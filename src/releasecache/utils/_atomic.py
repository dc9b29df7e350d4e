"""Replace a small file atomically: readers see the old or the new content, never half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ._perms import file_mode


def atomic_write(path: Path, data: bytes, *, mode: int | None = None, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename.

    ``durable=False`` skips the fsync, for advisory records (resume sidecars,
    lock owners, verification stamps) whose loss after a power cut costs
    only a little repeated work. The temporary file is created exclusively,
    so a planted symlink at its name is never followed. The file gets ``mode``,
    by default what the umask allows (``0o666 & ~umask``, as ``open()`` would
    give; ``mkstemp`` alone would give 0600 and lock every other user out).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every FS supports it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

