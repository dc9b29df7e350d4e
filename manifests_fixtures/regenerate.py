"""Rewrite the example manifests in manifests_fixtures/vbn/ from the fixture release.

    python manifests_fixtures/regenerate.py

The release's bytes are generated (reproducibly) by
``tests.support.fixtures.vbn.build_vbn_release``; these manifests describe them in
the real release's format and URL style. Version ids here are derived from the
content (a real server assigns its own when ``releasecache.cache.publish`` uploads).
The test suite checks that the committed files match a fresh build.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "vbn"


def fixture_version_id(key: str, path: Path, digest: str) -> str:
    """A stable stand-in for an S3 version id (32 URL-safe characters, like the real ones)."""
    return hashlib.sha256(f"{key}\0{digest}".encode()).hexdigest()[:32]


def build(out: Path = OUT) -> list[Path]:
    """Build the fixture release in a temporary directory and write its manifests to ``out``."""
    from tests.support.fixtures.vbn import build_vbn_release
    from releasecache.manifest import Manifest, manifest_name
    from releasecache.vbn.project import BUCKET_NAME, PROJECT_NAME
    from releasecache.cache.publish import build_manifest

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for version, source in build_vbn_release(Path(tmp)).items():
            document = build_manifest(PROJECT_NAME, version, source, bucket=BUCKET_NAME,
                                      version_id_for=fixture_version_id)
            name = manifest_name(PROJECT_NAME, version)
            body = json.dumps(document, indent=2) + "\n"
            Manifest.from_bytes(body.encode(), name=name)  # only valid manifests are committed
            (out / name).write_text(body)
            written.append(out / name)
    return written


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # the fixture generator lives in the checkout's tests/
    for path in build(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(path)
