"""One manifest: its model and validation, names and versions, paths and URLs, and comparing two."""

from .diff import Change, ManifestDiff, compare_manifests
from .model import MAX_MANIFEST_BYTES, FileEntry, Manifest
from .names import (
    manifest_name,
    match_manifest_name,
    parse_semver,
    resolve_manifest_spec,
    sort_manifest_names,
    version_from_manifest_name,
)
from .paths import check_relative_path, relpath_within
from .urls import S3Location, parse_s3_url

__all__ = [
    "MAX_MANIFEST_BYTES", "Change", "FileEntry", "Manifest", "ManifestDiff", "S3Location", "check_relative_path",
    "compare_manifests", "manifest_name", "match_manifest_name", "parse_s3_url", "parse_semver", "relpath_within",
    "resolve_manifest_spec", "sort_manifest_names", "version_from_manifest_name",
]
