"""blake2b, as manifests record it: the one hashing helper for files and bytes."""

from __future__ import annotations

import hashlib
import os


def hash_file(path: str | os.PathLike[str], *, copy_to: int | None = None, follow_symlinks: bool = True,
              chunk: int = 4 * 1024 * 1024) -> str:
    """The 128-hex blake2b of a file, as manifests record it.

    Parameters
    ----------
    path
        The file to hash.
    copy_to
        A file descriptor that receives every byte as it is hashed (copy and
        hash in one pass).
    follow_symlinks
        If False, refuse a symlink at ``path`` (``OSError`` ELOOP).
    """
    hasher = hashlib.blake2b()
    flags = os.O_RDONLY | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(os.open(path, flags), "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            hasher.update(block)
            if copy_to is not None:
                view = memoryview(block)
                while view:
                    view = view[os.write(copy_to, view):]
    return hasher.hexdigest()


def hash_bytes(data: bytes) -> str:
    """The 128-hex blake2b of ``data`` (a manifest document, a small record)."""
    return hashlib.blake2b(data).hexdigest()


def new_hasher(*, digest_size: int = 64) -> "hashlib._Hash":
    """An empty blake2b hasher, for bytes hashed in order as they arrive.

    The default digest is the manifests' (64 bytes, 128 hex); shorter digests
    serve comparisons that never leave the process (block hashes in audits).
    """
    return hashlib.blake2b(digest_size=digest_size)
