"""Replace a small file atomically: readers see the old or the new content, never half."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, mode: int | None = None, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename.

    ``durable=False`` skips the fsync, for advisory records (resume sidecars,
    lock owners, verification stamps) whose loss after a power cut costs
    only a little repeated work. The temporary file is created exclusively,
    so a planted symlink at its name is never followed. The file gets ``mode``,
    by default what the umask allows (``0o666 & ~umask``, as ``open()`` would
    give; ``mkstemp`` would give 0600 and lock every other user out).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _attempt in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            # Created with the final mode (the kernel applies the umask), so even a temporary
            # file left by a killed process never locks another user out.
            fd = os.open(tmp, flags, 0o666 if mode is None else mode)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(f"no free temporary name next to {path}")
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # exactly this mode, whatever the umask
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

