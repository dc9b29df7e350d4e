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
    closing = out.rstrip().splitlines()[-1]
    assert closing == f"Explore it: {tmp_path / 'cache'}" and (tmp_path / "cache").is_dir()  # still there
    assert "\x1b" not in out


def test_demo_output_is_plain_and_its_closing_line_is_true():
    """Piped output has no ANSI escape codes; without --workdir the closing line says the cache was removed."""
    result = subprocess.run([sys.executable, "-m", "tests.support.demo"], capture_output=True, text=True,
                            timeout=300, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\x1b" not in result.stdout and "\x1b" not in result.stderr
    closing = result.stdout.rstrip().splitlines()[-1]
    assert "removed" in closing and "DEMO_DIR=" in closing and "--workdir" in closing
    temp_dir = closing.split("(", 1)[1].split(")", 1)[0]
    assert not Path(temp_dir).exists()  # it says removed, and it is
