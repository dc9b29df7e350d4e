"""Publisher mistakes that only a broken release can show, found by comparing manifests.

An S3 version id names one immutable object, and a published manifest version
is never edited, so two things must hold across all manifests of a release:

* one ``(bucket, key, version_id)`` has one content: listing it with two
  different hashes (in two versions, or twice in one) means a manifest is wrong;
* one version has one manifest: the same version published again with other
  bytes (under a second name, or overwritten on the bucket) means the listing a
  result was computed from is no longer the one being served.

The functions here only compare (no I/O) and return messages; the cache turns
them into :class:`~releasecache.errors.PublisherWarning` warnings when it loads
manifests.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from ..errors import PublisherWarning
from ..utils import hash_bytes, warn_user
from .model import Manifest


def version_id_conflicts(manifests: Iterable[Manifest]) -> list[str]:
    """Messages for every ``(bucket, key, version_id)`` listed with more than one hash."""
    seen: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    reported: set[tuple[str, str, str]] = set()
    out: list[str] = []
    for manifest in manifests:
        label = manifest.name or manifest.version
        for entry in manifest.entries():
            if not entry.version_id:
                continue  # an unpinned file has no identity to contradict
            where = (entry.bucket, entry.key, entry.version_id)
            first = seen.setdefault(where, (entry.file_hash, label, entry.relative_path))
            if first[0] != entry.file_hash and where not in reported:
                reported.add(where)
                out.append(f"s3://{entry.bucket}/{entry.key} version {entry.version_id} is listed with blake2b "
                           f"{first[0][:16]}… in {first[1]} ({first[2]}) and {entry.file_hash[:16]}… in {label} "
                           f"({entry.relative_path}); one version id is one object, so one of these manifests is wrong")
    return out


def duplicate_versions(manifests: Mapping[str, bytes]) -> list[str]:
    """Messages for manifest versions published more than once with different bytes.

    ``manifests`` maps manifest file names to their bytes.
    """
    by_version: dict[str, list[tuple[str, str]]] = {}
    for name, data in manifests.items():
        try:
            version = Manifest.from_bytes(data, name=name).version
        except Exception:  # an invalid manifest is reported where it is loaded
            continue
        by_version.setdefault(version, []).append((name, hash_bytes(data)))
    out = []
    for version, copies in sorted(by_version.items()):
        if len({digest for _, digest in copies}) > 1:
            listing = ", ".join(f"{name} (blake2b {digest[:16]}…)" for name, digest in sorted(copies))
            out.append(f"version {version} was published more than once with different content: {listing}")
    return out


def republished(name: str, cached: bytes, served: bytes) -> str | None:
    """A message if the bucket now serves other bytes for a manifest this cache saved earlier."""
    if cached == served:
        return None
    return (f"manifest {name} on the server (blake2b {hash_bytes(served)[:16]}…) differs from the "
            f"copy saved in this cache (blake2b {hash_bytes(cached)[:16]}…): the version was "
            "published again with different content; the saved copy is kept")


def warn(messages: Iterable[str]) -> list[str]:
    """Issue each message as a :class:`~releasecache.errors.PublisherWarning` at the user's line; return them."""
    out = list(messages)
    for message in out:
        warn_user(message, PublisherWarning)
    return out


__all__ = ["duplicate_versions", "republished", "version_id_conflicts", "warn"]
