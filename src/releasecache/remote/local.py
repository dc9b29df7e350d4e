"""A local mirror directory: a mounted or synced copy of the bucket (``<root>/<key>``).

A mirror keeps only the latest bytes of each key, so version ids cannot be
honoured; the blake2b check after the copy is what proves the content.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from ..errors import RemoteAccessError, RemoteNotFoundError, TransientRemoteError, UnsafePathError
from ..manifest import S3Location, relpath_within
from .base import RangeNotSatisfiable, RangeResponse, Remote

CHUNK = 1024 * 1024


class LocalRemote(Remote):
    """Objects in a local directory laid out like the bucket.

    Parameters
    ----------
    root
        Directory holding the bucket's keys, e.g. ``/mnt/s3/visual-behavior-neuropixels-data``
        (which contains ``visual-behavior-neuropixels/manifests/...``).
    """

    reports_version = False

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"LocalRemote {self.root}"

    def _path(self, key: str) -> Path:
        try:
            return relpath_within(self.root, key)
        except UnsafePathError as exc:
            raise exc.with_context(key=key)

    @staticmethod
    def _context(path: Path, location: S3Location) -> dict[str, str | None]:
        """The error context of a request for ``location`` (its URL is the mirror file's)."""
        return {"url": path.as_uri(), "key": location.key, "version_id": location.version_id}

    def list_manifests(self, project: str) -> list[str]:
        folder = self._path(f"{project}/manifests")
        if not folder.is_dir():
            raise RemoteNotFoundError(f"no manifests folder at {folder}", url=folder.as_uri())
        return [p.name for p in folder.iterdir() if p.suffix == ".json" and p.is_file()]

    def get_manifest(self, project: str, name: str) -> bytes:
        path = self._path(f"{project}/manifests/{name}")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise RemoteNotFoundError(f"no manifest {path}", url=path.as_uri(), manifest=name) from None
        except PermissionError as exc:
            raise RemoteAccessError(f"cannot read {path}: {exc.strerror}", url=path.as_uri(), manifest=name) from None

    def stat(self, location: S3Location) -> int:
        path = self._path(location.key)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise RemoteNotFoundError(f"{location.key} does not exist in the mirror {self.root}",
                                      **self._context(path, location)) from None

    def get_range(self, location: S3Location, start: int = 0, end: int | None = None) -> RangeResponse:
        path = self._path(location.key)
        context = self._context(path, location)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise RemoteNotFoundError(f"{path} does not exist in the mirror", **context) from None
        except PermissionError as exc:
            raise RemoteAccessError(f"cannot read {path}: {exc.strerror}", **context) from None
        except OSError as exc:
            raise TransientRemoteError(f"cannot open {path}: {exc}", **context) from None
        size = os.fstat(fh.fileno()).st_size
        if start >= size and size > 0 or (size == 0 and (start > 0 or end is not None)):
            fh.close()
            raise RangeNotSatisfiable(f"range {start}-{end} outside {path} ({size} bytes)", **context)
        last = size - 1 if end is None else min(end, size - 1)
        fh.seek(start)
        partial = not (start == 0 and end is None)
        return RangeResponse(
            start=start,
            length=max(0, last - start + 1),
            total_size=size,
            version_id=None,
            chunks=self._iter(fh, last - start + 1, path),
            partial=partial,
            _closer=fh,
        )

    @staticmethod
    def _iter(fh, remaining: int, path: Path) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        try:
            while remaining > 0:
                chunk = fh.read(min(CHUNK, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk
        except OSError as exc:
            raise TransientRemoteError(f"reading {path}: {exc}") from None
        finally:
            fh.close()
