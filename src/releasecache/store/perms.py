"""File modes for caches that other users read or share: what the umask allows, and what the group needs.

Every file the cache writes gets ``0o666 & ~umask`` (blobs: read-only,
``0o444 & ~umask``), every directory ``0o777 & ~umask``, as any other program's
files would; the process's umask is never changed. A cache directory shared by a
group follows the recipe of docs/clusters.md: the directory belongs to the
group, is setgid (so everything created below it belongs to the group too) and
group-writable, and its users work with ``umask 002``.

:func:`check_tree` finds what would lock the cache's group out: a directory or
file whose group bits are narrower than the cache directory's own (a user
with ``umask 077``, a ``cp`` without ``-p``, a restored backup), a directory
that lost its setgid bit or belongs to another group, a blob that became
writable. :func:`fix_tree` repairs those this user owns (root: all of them).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping


@dataclass(frozen=True)
class PermissionProblem:
    """A path whose mode or group would lock members of the cache's group out.

    Attributes
    ----------
    path
        Relative to the cache directory.
    owner
        Its owner's uid (only the owner, or root, can change it).
    mode, gid
        What it has now.
    want_mode, want_gid
        What it needs (``want_gid`` None: any).
    problem
        In words.
    """

    path: str
    owner: int
    mode: int
    gid: int
    want_mode: int
    want_gid: int | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "owner": self.owner, "mode": f"{self.mode:04o}", "gid": self.gid,
                "want_mode": f"{self.want_mode:04o}", "want_gid": self.want_gid, "problem": self.problem}


def _walk(root: str, known: Mapping[str, os.stat_result]) -> Iterator[tuple[str, os.stat_result | None,
                                                                         OSError | None]]:
    """Every directory and file below ``root`` with its lstat; symbolic links are skipped, never followed.

    String paths and one ``lstat`` per entry (none for paths in ``known``, whose lstat the
    caller just took, and none for the links the directory listing names as links): a cache
    holds a blob, a stamp, a lock and a view link per file, 400,000 entries for a release of
    100,000 files.
    """
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                # is_symlink() reads the listing's file type; it costs an lstat only where that is unknown
                names = sorted(entry.name for entry in it if not entry.is_symlink())
        except OSError as exc:
            yield folder, None, exc
            continue
        for name in names:
            path = f"{folder}/{name}"
            st = known.get(path)
            if st is None:
                try:
                    st = os.lstat(path)
                except OSError as exc:
                    yield path, None, exc
                    continue
            yield path, st, None
            if stat.S_ISDIR(st.st_mode):
                stack.append(path)


def check_tree(root: str | os.PathLike[str], known: Mapping[str, os.stat_result] | None = None) -> list[
        PermissionProblem]:
    """What, below ``root``, would lock out the users the cache directory itself lets in.

    The cache directory's group bits say what its group may do: read (``g+rx``)
    or also write (``g+w``, a group-shared cache). Each directory below it must
    allow the group as much (and, if the cache directory is setgid, be setgid
    and belong to the same group); each file must be group-readable, and
    group-writable in a shared cache, except blobs, which must be read-only.
    Nothing is reported for a cache directory its group cannot enter.
    ``known`` maps paths (``root`` joined with "/") to an ``lstat`` just taken, which is
    then not taken again.
    """
    top = os.fspath(root).rstrip("/") or "/"
    try:
        st_root = os.stat(top)
    except OSError:
        return []
    group_bits = st_root.st_mode & 0o070
    if group_bits & 0o050 != 0o050:
        return []
    shared = bool(group_bits & 0o020)
    setgid = bool(st_root.st_mode & stat.S_ISGID)
    gid = st_root.st_gid if (shared or setgid) else None
    dir_need = 0o070 if shared else 0o050
    file_need = 0o060 if shared else 0o040
    problems: list[PermissionProblem] = []
    blobs = f"{top}/blobs/"
    skip = len(top) + 1
    for path, st, error in _walk(top, known or {}):
        rel = path[skip:] if path != top else "."
        if error is not None:
            if error.errno in (errno.EACCES, errno.EPERM):
                problems.append(PermissionProblem(rel, -1, 0, -1, dir_need, gid,
                                                  f"cannot be read by uid {os.geteuid()}: {error.strerror}"))
            continue
        assert st is not None
        mode = st.st_mode & 0o7777
        fmt = st.st_mode & 0o170000
        if fmt == stat.S_IFLNK:
            continue
        why: list[str] = []
        want = mode
        if fmt == stat.S_IFDIR:
            if mode & dir_need != dir_need:
                why.append(f"the group cannot {'write into' if shared else 'enter'} it")
                want |= dir_need
            if setgid and not mode & stat.S_ISGID:
                why.append("it lost the setgid bit, so new files there get the creator's group")
                want |= stat.S_ISGID
        elif fmt == stat.S_IFREG:
            is_blob = path.startswith(blobs)
            need = 0o040 if is_blob else file_need
            if mode & need != need:
                why.append("the group cannot read it" if not mode & 0o040 else "the group cannot write it")
                want |= need
            if is_blob and mode & 0o222:
                why.append("a blob must be read-only")
                want &= ~0o222
        else:
            continue
        if gid is not None and st.st_gid != gid:
            why.append(f"it belongs to group {st.st_gid}, not the cache's group {gid}")
        if why:
            problems.append(PermissionProblem(rel, st.st_uid, mode, st.st_gid, want, gid, "; ".join(why)))
    return problems


def fix_tree(root: str | os.PathLike[str], problems: list[PermissionProblem]) -> tuple[list[str], list[PermissionProblem]]:
    """Repair ``problems`` that this user may repair. Returns (paths fixed, problems left).

    Only a path's owner (or root) can change its mode or group; the others are
    returned, each naming its owner.
    """
    top = Path(root)
    fixed: list[str] = []
    left: list[PermissionProblem] = []
    me = os.geteuid()
    for p in problems:
        if p.owner < 0 or (me != 0 and p.owner != me):
            left.append(p)
            continue
        path = top / p.path
        try:
            if p.want_gid is not None and p.gid != p.want_gid:
                os.lchown(path, -1, p.want_gid)
            os.chmod(path, p.want_mode, follow_symlinks=False)
            fixed.append(p.path)
        except OSError:
            left.append(p)
    return fixed, left


__all__ = ["PermissionProblem", "check_tree", "fix_tree"]
