"""What ``publish`` decides before it uploads: the target name, the previous version, what changed.

The command line only parses options and prints; these decisions are library
code, so a script publishing a release makes the same ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ManifestNotFoundError, VersionExistsError, VersioningDisabledError
from ..manifest import FileEntry, Manifest, manifest_name, parse_semver, sort_manifest_names, version_from_manifest_name
from ..remote.s3 import S3Remote
from ..utils import hash_file, warn_user
from .publish import publish_version, release_files

log = logging.getLogger("releasecache")


@dataclass
class PublishPlan:
    """A version about to be published.

    ``metadata`` and ``data`` map the release's metadata names and data file
    ids to their keys.

    Attributes
    ----------
    project, version, source
        What is published, and from which directory.
    target
        The new manifest's name.
    previous
        The manifest unchanged files are reused from (None: upload everything).
    before
        That manifest, read from the bucket.
    """

    project: str
    version: str
    source: Path
    target: str
    previous: str | None = None
    before: Manifest | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)

    @property
    def old_entries(self) -> dict[str, FileEntry]:
        """The previous manifest's entries by key."""
        return {e.key: e for e in self.before.entries()} if self.before else {}

    def keys(self) -> list[str]:
        """Every key of the new version."""
        return [*self.metadata.values(), *self.data.values()]

    def changed_keys(self) -> list[str]:
        """Keys whose content differs from the previous version (hashes the files), sorted."""
        old = self.old_entries
        return sorted(key for key in self.keys()
                      if key not in old or old[key].file_hash != hash_file(self.source / key))

    def unchanged_keys(self) -> list[str]:
        """Keys whose content the previous version already has, sorted."""
        return sorted(set(self.keys()) - set(self.changed_keys()))


def plan_publish(remote: S3Remote, project: str, version: str, source: str | Path, *, previous: str | None = None,
                 no_previous: bool = False) -> PublishPlan:
    """Decide how ``source`` becomes version ``version`` of ``project`` on ``remote``.

    Raises
    ------
    VersionExistsError
        If that version is already published (versions are immutable).
    ManifestNotFoundError
        If ``previous`` is not on the bucket.
    """
    new_version = parse_semver(version)
    names = sort_manifest_names(remote.list_manifests(project))
    if any(version_from_manifest_name(n) == new_version for n in names):
        raise VersionExistsError(f"version {version} of {project} is already published; versions are immutable",
                                 manifest=manifest_name(project, version))
    the_plan = PublishPlan(project, version, Path(source), manifest_name(project, version))
    if not no_previous:
        if previous is None:
            older = [n for n in names if version_from_manifest_name(n) < new_version]
            previous = older[-1] if older else None
        if previous is not None:
            if previous not in names:
                raise ManifestNotFoundError(f"no manifest {previous!r} on s3://{remote.bucket}/{project}/manifests/",
                                            manifest=previous)
            the_plan.before = Manifest.from_bytes(remote.get_manifest(project, previous), name=previous)
            the_plan.previous = previous
    the_plan.metadata, the_plan.data = release_files(the_plan.source, project)
    return the_plan


def check_versioning(remote: S3Remote) -> None:
    """Refuse a bucket without versioning: a release needs version ids to be pinned.

    Servers that do not implement the query are let through (with a warning in the log).
    """
    try:
        status = remote.client.get_bucket_versioning(Bucket=remote.bucket).get("Status")
    except Exception as exc:  # some S3-compatible servers do not implement it
        log.warning("cannot read the versioning status of %s: %s", remote.bucket, exc)
        return
    if status != "Enabled":
        raise VersioningDisabledError(f"bucket {remote.bucket} does not have versioning enabled "
                                      f"(status: {status or 'off'}); a release needs version ids to be pinned")


def run_publish(remote: S3Remote, the_plan: PublishPlan, **options: Any) -> dict[str, Any]:
    """Upload what changed and the manifest; return the manifest name, uploaded and reused keys.

    ``options`` go to :func:`~releasecache.cache.publish.publish_version`
    (``region``, ``url_style``, ``record_size``).
    """
    check_versioning(remote)
    manifest = publish_version(remote, the_plan.project, the_plan.version, the_plan.source, previous=the_plan.before,
                               **options)
    old = the_plan.old_entries
    uploaded = sorted(e.key for e in manifest.entries() if e.key not in old or old[e.key].version_id != e.version_id)
    reused = sorted(e.key for e in manifest.entries() if e.key not in uploaded)
    if any(not e.version_id for e in manifest.entries()):
        warn_user("the bucket returned no version ids: files are not pinned; enable bucket versioning")
    return {"manifest": manifest.name, "upload": uploaded, "reuse": reused,
            "manifest_key": f"{the_plan.project}/manifests/{manifest.name}"}


__all__ = ["PublishPlan", "check_versioning", "plan_publish", "run_publish"]
