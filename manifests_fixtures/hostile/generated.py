"""Hostile manifests too large to keep as files: built at test time.

Each item is ``(name, data, expected error class name, why)``. The JSON files
next to this module are the rest of the corpus; ``index.json`` says which
error each must raise and why it is hostile.
"""

from __future__ import annotations

import json
from typing import Iterator

from releasecache import manifest as _manifest

_URL = "https://hostile-bucket.s3.us-west-2.amazonaws.com/toy-release"


def _doc(url: str) -> bytes:
    return json.dumps({
        "project_name": "toy-release", "manifest_version": "9.0.0", "metadata_file_id_column_name": "file_id",
        "data_pipeline": [], "metadata_files": {},
        "data_files": {"1": {"url": url, "version_id": "v1", "file_hash": "cd" * 64}},
    }).encode()


def generated_manifests() -> Iterator[tuple[str, bytes, str, str]]:
    limit = _manifest.MAX_MANIFEST_BYTES
    yield ("90_enormous_document.json", b"{" + b" " * limit + b"}", "ManifestParseError",
           f"one byte over the {limit}-byte limit: refused before parsing")
    yield ("91_ten_megabyte_key.json", _doc(f"{_URL}/" + "a" * 10_000_000), "UnsafePathError",
           "a 10 MB path segment")
    yield ("92_million_segments.json", _doc(f"{_URL}/" + "a/" * 1_000_000 + "x"), "UnsafePathError",
           "a path of a million directories")
