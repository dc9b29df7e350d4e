"""Relative paths from untrusted input, checked before they touch the cache directory."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from ..errors import UnsafePathError
from ..utils import short_repr


# Checked for every entry of a manifest (100,000 of them in a large release): compiled once.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_relative_path(path: str, *, what: str) -> str:
    """Return ``path`` if it is a safe relative POSIX path inside a directory.

    Raises
    ------
    UnsafePathError
        For absolute paths, ``..`` or ``.`` segments, empty segments,
        backslashes, NUL or control characters, or an over-long path.
    """
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"{what}: empty path")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a JSON escape such as \ud800
        raise UnsafePathError(f"{what}: path {short_repr(path)} is not valid Unicode") from None
    if _CONTROL.search(path):
        raise UnsafePathError(f"{what}: path {short_repr(path)} contains NUL or control characters", path=path)
    if "\\" in path:
        raise UnsafePathError(f"{what}: path {short_repr(path)} contains a backslash", path=path)
    if path.startswith("/") or _DRIVE.match(path):
        raise UnsafePathError(f"{what}: path {short_repr(path)} is absolute", path=path)
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(f"{what}: path {short_repr(path)} has an empty, '.' or '..' segment", path=path)
        if len(part) > 63 and len(part.encode()) > 255:  # 63 characters are at most 252 bytes
            raise UnsafePathError(f"{what}: a segment of {short_repr(path)} is longer than 255 bytes", path=path)
    if len(path.encode()) > 1024:
        raise UnsafePathError(f"{what}: path is longer than 1024 bytes", path=path)
    return path


def relpath_within(root: Path, relative: str) -> Path:
    """Join ``relative`` (already validated) under ``root``; refuse anything that escapes it."""
    check_relative_path(relative, what="path")
    joined = root.joinpath(*PurePosixPath(relative).parts)
    return joined



# All paths of a manifest at once, joined by "\n": a few C-level scans instead of a Python call per
# path. Conservative: anything unusual (a segment of 64 characters or more, a path of 256 or more)
# sends the caller to check_relative_path, path by path, which also gives the exact error.
_DRIVES = re.compile(r"^[A-Za-z]:", re.MULTILINE)


def all_plainly_safe(paths: list[str]) -> bool:
    """True if every path passes :func:`check_relative_path` and none is unusual (no segment of
    64 or more characters, no path of 256 or more); False means "check them one by one".

    For the paths it accepts this is :func:`check_relative_path` on each, done as linear
    C-level scans over all of them at once (a manifest holds up to 100,000 paths).
    """
    try:
        joined = "\n".join(paths)
        # str.isprintable is False for every control character (also "\n", so no path splits in
        # two below) and for lone surrogates; it also refuses a few exotic printable-looking
        # characters, which only sends those paths to the one-by-one check.
        if not paths or not all(map(str.isprintable, paths)) or "\\" in joined:
            return False
    except TypeError:
        return False
    longest = max(map(len, paths))
    if longest >= 256:
        return False
    if longest >= 64 and max(map(len, joined.replace("\n", "/").split("/"))) >= 64:
        return False
    # Each path as "/path/": an empty (or absolute) path or segment shows as "//", and "." or ".." as
    # "/./" or "/../"; "\n" cannot be in a segment, so no match spans two paths.
    framed = "/" + joined.replace("\n", "/\n/") + "/"
    if "//" in framed or "/./" in framed or "/../" in framed:
        return False
    return ":" not in joined or _DRIVES.search(joined) is None
