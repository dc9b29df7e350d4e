"""Version views: the ``<project>-<version>/`` trees of relative links, and the manifests they come from."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import ManifestError
from ..manifest import Manifest
from .store import Store

log = logging.getLogger("releasecache")


def downloaded_manifests(store: Store, parsed: Mapping[str, Manifest] | None = None) -> dict[str, Manifest]:
    """Every manifest saved in ``manifests/`` that still parses, by file name.

    ``parsed`` holds manifests the caller already has, by file name: those are not read again
    (a saved manifest is never edited; parsing one of 100,000 entries takes half a second).
    """
    parsed = parsed or {}
    out: dict[str, Manifest] = {}
    folder = store.manifests_dir
    if not folder.is_dir() or folder.is_symlink():
        return out
    for path in sorted(folder.iterdir()):
        if path.suffix != ".json" or path.name.startswith(".") or path.is_symlink():
            continue
        if path.name in parsed:
            out[path.name] = parsed[path.name]
            continue
        try:
            out[path.name] = Manifest.from_path(path)
        except ManifestError as exc:
            log.warning("ignoring unreadable manifest %s: %s", path, exc)
    return out


def view_dirs(store: Store) -> list[Path]:
    """Top-level view directories (``<project>-<version>``) of every downloaded manifest."""
    names = {m.view_dir_name for m in downloaded_manifests(store).values()}
    return [store.root / n for n in sorted(names) if os.path.lexists(store.root / n)]


def walk_links(top: Path) -> Iterable[str]:
    """Every symlink below ``top`` (never following directory links), as a path string.

    One directory scan per directory; the listing's file types say which entries are links,
    so a view of 100,000 files costs no system call per link here.
    """
    if os.path.islink(top) or not top.is_dir():
        return
    stack = [str(top)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if entry.is_symlink():
                yield entry.path
            elif entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.path)
        stack.extend(reversed(subdirs))


def unlink_views_to(store: Store, hashes: set[str]) -> list[str]:
    """Remove every view link whose target is one of ``hashes`` and no longer exists."""
    removed: list[str] = []
    for top in view_dirs(store):
        for link in walk_links(top):
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if os.path.basename(target) in hashes and not os.path.exists(link):
                try:
                    os.unlink(link)
                    removed.append(os.path.relpath(link, store.root))
                except OSError as exc:
                    log.warning("could not remove dangling view link %s: %s", link, exc)
    return removed
