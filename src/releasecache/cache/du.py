"""Disk usage: bytes per downloaded manifest, unique and shared, and in total."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..manifest import Manifest
from ..store import Store
from ..store.views import downloaded_manifests
from ..utils import human_bytes as _human

log = logging.getLogger("releasecache")


@dataclass
class ManifestUsage:
    """Disk use of one manifest's files in this cache."""

    name: str
    files: int = 0
    present: int = 0
    missing: int = 0
    in_layers: int = 0
    bytes: int = 0
    unique_bytes: int = 0
    shared_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DiskUsage:
    """Bytes per manifest (shared with other manifests vs unique to it) and totals.

    ``total_bytes`` is everything the cache's blobs, partial downloads and
    quarantine hold; ``unreferenced_bytes`` is what no downloaded manifest uses
    (what ``gc`` of every manifest would free).
    """

    manifests: dict[str, ManifestUsage] = field(default_factory=dict)
    blob_count: int = 0
    blob_bytes: int = 0
    referenced_bytes: int = 0
    unreferenced_bytes: int = 0
    partial_bytes: int = 0
    quarantine_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.blob_bytes + self.partial_bytes + self.quarantine_bytes

    def summary(self) -> str:
        lines = [f"{_human(self.total_bytes)} in total: {self.blob_count} blobs ({_human(self.blob_bytes)}), "
                 f"{_human(self.partial_bytes)} partial downloads, {_human(self.quarantine_bytes)} quarantined; "
                 f"{_human(self.unreferenced_bytes)} used by no manifest"]
        for u in self.manifests.values():
            lines.append(f"  {u.name}: {u.present}/{u.files} files, {_human(u.bytes)} "
                         f"({_human(u.unique_bytes)} unique, {_human(u.shared_bytes)} shared)"
                         + (f", {u.in_layers} in read-only layers" if u.in_layers else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"manifests": {k: v.to_dict() for k, v in self.manifests.items()}, "blob_count": self.blob_count,
                "blob_bytes": self.blob_bytes, "referenced_bytes": self.referenced_bytes,
                "unreferenced_bytes": self.unreferenced_bytes, "partial_bytes": self.partial_bytes,
                "quarantine_bytes": self.quarantine_bytes, "total_bytes": self.total_bytes}

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([u.to_dict() for u in self.manifests.values()]).set_index("name")


def _dir_bytes(path: Path) -> int:
    total = 0
    if os.path.islink(path) or not path.is_dir():
        return 0
    for dirpath, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def disk_usage(store: Store, manifests: dict[str, Manifest] | None = None) -> DiskUsage:
    """Bytes used, per manifest (default: every downloaded manifest) and in total."""
    manifests = downloaded_manifests(store) if manifests is None else manifests
    usage = DiskUsage()
    sizes: dict[str, int] = {}
    for h, path in store.iter_blobs():
        try:
            sizes[h] = os.lstat(path).st_size
        except OSError:
            continue
    usage.blob_count = len(sizes)
    usage.blob_bytes = sum(sizes.values())
    refs: dict[str, set[str]] = {}
    per: dict[str, set[str]] = {}
    for name, manifest in manifests.items():
        hashes = {e.file_hash for e in manifest.entries()}
        per[name] = hashes
        for h in hashes:
            refs.setdefault(h, set()).add(name)
    for name, manifest in manifests.items():
        u = ManifestUsage(name=name, files=sum(1 for _ in manifest.entries()))
        for entry in manifest.entries():
            if entry.file_hash in sizes:
                u.present += 1
            elif store.layer_blob(entry.file_hash) is not None:
                u.in_layers += 1
            else:
                u.missing += 1
        for h in per[name]:
            if h not in sizes:
                continue
            u.bytes += sizes[h]
            if len(refs[h]) > 1:
                u.shared_bytes += sizes[h]
            else:
                u.unique_bytes += sizes[h]
        usage.manifests[name] = u
    usage.referenced_bytes = sum(s for h, s in sizes.items() if h in refs)
    usage.unreferenced_bytes = usage.blob_bytes - usage.referenced_bytes
    usage.partial_bytes = _dir_bytes(store.partial_dir)
    usage.quarantine_bytes = _dir_bytes(store.quarantine_dir)
    return usage


__all__ = ["DiskUsage", "ManifestUsage", "disk_usage"]
