"""Publish a versioned release to a bucket, the way the real release is published.

Each version is a directory whose tree mirrors the bucket keys
(``<project>/project_metadata/*.csv``, data files anywhere below ``<project>/``)
plus an optional ``file_ids.json`` mapping data-file ids to keys. Only files
whose content changed since the previous version are uploaded; unchanged files
keep their previous version id. The manifest records the version ids the
server assigned.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import quote

from ..config import DEFAULT_REGION
from ..errors import ManifestValidationError
from ..manifest import Manifest, check_relative_path, manifest_name, parse_semver
from ..remote.s3 import S3Remote
from ..utils import hash_file

log = logging.getLogger("releasecache")


def object_url(bucket: str, key: str, *, region: str | None = DEFAULT_REGION, style: str = "virtual") -> str:
    """The public URL of an object in the real release's style (virtual-hosted with region)."""
    if style == "s3":
        return f"s3://{bucket}/{key}"
    host = f"{bucket}.s3.{region}.amazonaws.com" if region else f"{bucket}.s3.amazonaws.com"
    if style == "path":
        host = f"s3.{region}.amazonaws.com/{bucket}" if region else f"s3.amazonaws.com/{bucket}"
    return f"https://{host}/{quote(key)}"


def release_files(source: Path, project: str) -> tuple[dict[str, str], dict[str, str]]:
    """Split a version directory into metadata {name: key} and data {file_id: key}."""
    root = source / project
    if not root.is_dir():
        raise ManifestValidationError(f"{source} has no {project}/ folder")
    metadata = {p.stem: p.relative_to(source).as_posix()
                for p in sorted((root / "project_metadata").glob("*.csv"))}
    ids_path = source / "file_ids.json"
    if ids_path.is_file():
        data = {str(k): str(v) for k, v in json.loads(ids_path.read_text()).items()}
    else:
        others = sorted(p.relative_to(source).as_posix() for p in root.rglob("*")
                        if p.is_file() and p.parent.name != "project_metadata" and p.parent.name != "manifests")
        data = {str(i): key for i, key in enumerate(others)}
    for key in [*metadata.values(), *data.values()]:
        check_relative_path(key, what="key")
        if not (source / key).is_file():
            raise ManifestValidationError(f"{source / key} is listed but missing", path=str(source / key), key=key)
    return metadata, data


VersionIdFor = Callable[[str, Path, str], str]


def build_manifest(
    project: str,
    version: str,
    source: str | Path,
    *,
    bucket: str,
    version_id_for: VersionIdFor,
    region: str | None = DEFAULT_REGION,
    url_style: str = "virtual",
    data_pipeline: list[Mapping[str, Any]] | None = None,
    record_size: bool = False,
) -> dict[str, Any]:
    """The manifest document of one version directory.

    ``version_id_for(key, path, blake2b)`` supplies each file's version id: the
    publisher uploads and returns the server's id; offline tools may derive one.
    """
    parse_semver(version)
    source = Path(source)
    metadata, data = release_files(source, project)

    def entry_for(key: str) -> dict[str, Any]:
        path = source / key
        digest = hash_file(path)
        record: dict[str, Any] = {"url": object_url(bucket, key, region=region, style=url_style),
                                  "version_id": version_id_for(key, path, digest), "file_hash": digest}
        if record_size:
            record["size"] = path.stat().st_size
        return record

    return {
        "project_name": project,
        "manifest_version": version,
        "metadata_file_id_column_name": "file_id",
        "data_pipeline": list(data_pipeline or [
            {"name": "AllenSDK", "version": "2.16.2", "comment": "metadata and NWB files written by the AllenSDK"},
        ]),
        "metadata_files": {name: entry_for(key) for name, key in metadata.items()},
        "data_files": {fid: entry_for(key) for fid, key in data.items()},
    }


def publish_version(
    remote: S3Remote,
    project: str,
    version: str,
    source: str | Path,
    *,
    previous: Manifest | None = None,
    region: str | None = DEFAULT_REGION,
    url_style: str = "virtual",
    data_pipeline: list[Mapping[str, Any]] | None = None,
    name_style: str = "project_manifest",
    record_size: bool = False,
) -> Manifest:
    """Upload one version of a release and its manifest; return the manifest.

    Parameters
    ----------
    remote
        An :class:`~releasecache.remote.s3.S3Remote` with write access to a
        bucket that has versioning enabled.
    project, version
        The project prefix and the semver of this release.
    source
        Directory whose tree mirrors the bucket keys (see module docs).
    previous
        The previous version's manifest: files with the same key and hash are
        not uploaded again and keep their version id.
    record_size
        Also write each file's ``size`` into its entry (an optional extension).
    """
    bucket = remote.bucket
    if bucket is None:
        raise ValueError("the remote needs a bucket to publish into")
    before = {e.key: e for e in previous.entries()} if previous is not None else {}
    uploaded = 0

    def upload_if_changed(key: str, path: Path, digest: str) -> str:
        nonlocal uploaded
        old = before.get(key)
        if old is not None and old.file_hash == digest:
            return old.version_id
        with open(path, "rb") as fh:
            version_id = remote.put_object(key, fh) or ""
        uploaded += 1
        return version_id

    document = build_manifest(project, version, source, bucket=bucket, version_id_for=upload_if_changed,
                              region=region, url_style=url_style, data_pipeline=data_pipeline,
                              record_size=record_size)
    name = manifest_name(project, version, style=name_style)
    body = json.dumps(document, indent=2).encode()
    manifest = Manifest.from_bytes(body, name=name)  # never publish an invalid manifest
    remote.put_object(f"{project}/manifests/{name}", body, ContentType="application/json")
    log.info("published %s: %d files uploaded, %d reused", name, uploaded,
             len(document["metadata_files"]) + len(document["data_files"]) - uploaded)
    return manifest


def publish_release(remote: S3Remote, project: str, versions: Mapping[str, str | Path], **kwargs: Any) -> list[Manifest]:
    """Publish several versions in semver order, each reusing the previous one's uploads."""
    manifests: list[Manifest] = []
    previous: Manifest | None = None
    for version in sorted(versions, key=parse_semver):
        previous = publish_version(remote, project, version, versions[version], previous=previous, **kwargs)
        manifests.append(previous)
    return manifests
