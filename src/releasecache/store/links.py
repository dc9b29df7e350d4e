"""The one link fallback: a symbolic link, else a hard link, else the caller copies.

Filesystems differ in what they allow (no symlinks on some network and FAT
mounts, no hard links across devices or beyond a link-count limit). Every
place that wants a link asks here, so the errnos that mean "not here, try the
next way" are listed once.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

#: Errors that mean "this filesystem (or this pair of paths) refuses this kind of link".
REFUSED = frozenset({errno.EPERM, errno.EACCES, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV,
                     errno.EMLINK})


def try_links(dest: Path, source: Path, *, symlink_target: str | None = None, hardlink: bool = True) -> str | None:
    """Create ``dest`` as a link to ``source``; return ``"symlink"``, ``"hardlink"`` or None.

    Parameters
    ----------
    dest
        A path that does not exist yet (a temporary name the caller renames).
    source
        The existing file.
    symlink_target
        If given, try a symbolic link with this target first (relative targets
        keep a cache movable).
    hardlink
        Try a hard link (after the symlink, if any).

    Returns
    -------
    str or None
        The kind of link made, or None if the filesystem refused every kind
        tried: the caller then copies.

    Raises
    ------
    OSError
        Any error other than a refusal listed in :data:`REFUSED`.
    """
    if symlink_target is not None:
        try:
            os.symlink(symlink_target, dest)
            return "symlink"
        except OSError as exc:
            if exc.errno not in REFUSED:
                raise
    if hardlink:
        try:
            os.link(source, dest)
            return "hardlink"
        except OSError as exc:
            if exc.errno not in REFUSED:
                raise
    return None
