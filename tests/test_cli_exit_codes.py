"""Exit codes as docs/cli.md documents them, for failures a user meets (run as a second user where it matters)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from releasecache import ProjectCache

NOBODY = 65534
CLI = [sys.executable, "-m", "releasecache.cli"]


@pytest.fixture
def shared_dir():
    """A directory other users may traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="rc-compat-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(args, *, as_user=None, env=None):
    prefix = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups"] if as_user else []
    return subprocess.run(prefix + CLI + args, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})), cwd="/")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run a second uid")
def test_read_only_cache_gives_the_storage_code(shared_dir, vbn_bucket):
    """Another user's cache is opened read-only; a file not in it is a permission problem (6), not 'offline'."""
    cache_dir = shared_dir / "cache"
    cache = ProjectCache.from_s3(cache_dir, endpoint_url=vbn_bucket.endpoint_url, progress=False)
    cache.get_unit_table()
    for folder, dirs, files in os.walk(cache_dir):  # readable by all, writable by its owner only
        os.chmod(folder, 0o755)
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), 0o444)
    common = ["--cache-dir", str(cache_dir), "--endpoint-url", vbn_bucket.endpoint_url]
    result = _run(common + ["download", "--json"], as_user=NOBODY)
    assert result.returncode == 6, (result.returncode, result.stdout, result.stderr)
    error = json.loads(result.stdout)["error"]
    assert error["exit_code"] == 6 and "read-only" in error["message"]
    # what the cache holds is still served to the other user
    listing = _run(common + ["manifests", "--json"], as_user=NOBODY)
    assert listing.returncode == 0, listing.stderr
    assert vbn_bucket.names[-1] in listing.stdout


def test_unknown_version_is_a_usage_error(tmp_path, vbn_bucket):
    common = ["--cache-dir", str(tmp_path / "c"), "--endpoint-url", vbn_bucket.endpoint_url]
    result = _run(common + ["download", "--version", "9.9.9", "--json"])
    assert result.returncode == 2 and json.loads(result.stdout)["error"]["exit_code"] == 2


def test_diff_exit_code(tmp_path, vbn_bucket):
    common = ["--cache-dir", str(tmp_path / "c"), "--endpoint-url", vbn_bucket.endpoint_url]
    versions = [name.rsplit("_v", 1)[1][:-5] for name in vbn_bucket.names]
    differs = _run(common + ["diff", versions[0], versions[-1], "--exit-code"])
    assert differs.returncode == 1 and "project_metadata/units.csv changed" in differs.stdout
    assert differs.stdout.startswith("Changes going from\n") and not differs.stdout.endswith("\n\n")
    same = _run(common + ["diff", versions[0], versions[0], "--exit-code"])
    assert same.returncode == 0 and same.stdout.strip() == "The two manifests are equivalent"


def test_piped_output_has_no_escape_codes(tmp_path, vbn_bucket):
    """Not a terminal: no progress bars, colours or cursor movement in what a script or a log file gets."""
    common = ["--cache-dir", str(tmp_path / "c"), "--endpoint-url", vbn_bucket.endpoint_url]
    for args in (["download", "--metadata-only"], ["manifests"], ["verify"], ["download", "--file-id", "nope"]):
        result = _run(common + args)
        assert "\x1b" not in result.stdout and "\x1b" not in result.stderr, (args, result.stderr[-500:])
        assert "\r" not in result.stderr, args  # no progress bar redraws
    assert _run(common + ["download", "--file-id", "nope"]).returncode == 2
