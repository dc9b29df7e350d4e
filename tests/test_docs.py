"""The documentation builds, with warnings as errors, and covers the commands and the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from releasecache.cli import cli

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html", str(DOCS), str(out),
         "-d", str(tmp_path / "doctrees")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    cli_page = (out / "cli.html").read_text()
    for name in cli.commands:  # the reference is generated from the commands themselves
        assert f'id="releasecache-{name}"' in cli_page, name
    api = (out / "api.html").read_text()
    for obj in ("releasecache.cache.CloudCache.prefetch", "releasecache.vbn.project.ProjectCache.get_ecephys_session",
                "releasecache.transfer.stream.RemoteFile", "releasecache.cache.adopt.adopt", "releasecache.manifest.diff.compare_manifests"):
        assert f'id="{obj}"' in api, obj
    index = (out / "index.html").read_text()
    for page in [p.stem for p in DOCS.glob("*.md") if p.stem != "index"]:
        assert f'href="{page}.html"' in index, f"{page} is not in the table of contents"
