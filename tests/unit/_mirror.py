"""A two-version release laid out as a bucket mirror in a directory: no server needed."""

from __future__ import annotations

import json
from pathlib import Path

from releasecache.cache.publish import build_manifest
from releasecache.manifest import manifest_name

PROJECT = "unitproj"
BUCKET = "unit-bucket"


def build_mirror(root: Path) -> Path:
    """``root/mirror`` holds version 0.2.0's files and both manifests.

    Version 0.1.0 and 0.2.0 share ``data/same.bin`` (data file ``"0"``); only
    ``data/changed.bin`` (``"1"``) and the metadata differ.
    """
    mirror = root / "mirror"
    for version, changed in (("0.1.0", b"old bytes\n"), ("0.2.0", b"new bytes, longer\n")):
        src = root / f"src-{version}"
        (src / PROJECT / "project_metadata").mkdir(parents=True)
        (src / PROJECT / "data").mkdir()
        (src / PROJECT / "project_metadata" / "units.csv").write_text(f"unit_id,version\n1,{version}\n")
        (src / PROJECT / "data" / "same.bin").write_bytes(b"unchanged content\n" * 100)
        (src / PROJECT / "data" / "changed.bin").write_bytes(changed)
        (src / "file_ids.json").write_text(json.dumps({"0": f"{PROJECT}/data/same.bin",
                                                       "1": f"{PROJECT}/data/changed.bin"}))
        doc = build_manifest(PROJECT, version, src, bucket=BUCKET, version_id_for=lambda key, path, digest: "")
        manifests = mirror / PROJECT / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        (manifests / manifest_name(PROJECT, version)).write_text(json.dumps(doc))
        for path in (src / PROJECT).rglob("*"):  # the mirror holds the newest content of every key
            if path.is_file():
                dest = mirror / path.relative_to(src)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(path.read_bytes())
    return mirror
