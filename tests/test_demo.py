"""`make demo` runs the tour end to end (it starts its own S3 server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tests.support.demo", "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
                            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "OutdatedManifestWarning" in out and "project_metadata/units.csv changed" in out
    assert "0 failed" in out and "linked" in out
    assert (tmp_path / "cache" / "blobs" / "blake2b").is_dir()
