"""What ships: the wheel holds the library only, and every documented public name imports."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import releasecache

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    # Built as a user would: an isolated build with the backend that pyproject.toml names.
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("releasecache-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_wheel_has_the_library(wheel_names):
    for module in ("releasecache/__init__.py", "releasecache/py.typed", "releasecache/cache/cloud.py",
                   "releasecache/store/ingest.py", "releasecache/cli/__init__.py", "releasecache/vbn/nwb/ecephys.py"):
        assert module in wheel_names, module


def test_wheel_has_no_test_code(wheel_names):
    code = [n for n in wheel_names if n.endswith(".py")]
    assert code and all(n.startswith("releasecache/") for n in code), [n for n in code if not n.startswith("releasecache/")]
    forbidden = re.compile(r"(^|/)(tests?|support|fixtures?|testing|demo|bench)(/|\.py$)|s3server|proxy|workers|moto")
    assert [n for n in wheel_names if forbidden.search(n)] == []


def test_dir_lists_public_names_only():
    assert dir(releasecache) == sorted([*releasecache.__all__, "__version__"])


def test_every_name_in_all_imports():
    for name in releasecache.__all__:
        assert getattr(releasecache, name) is not None, name


def _documented_paths() -> set[str]:
    """Dotted ``releasecache.*`` names in the README and docs/api.md."""
    text = (ROOT / "README.md").read_text() + (ROOT / "docs" / "api.md").read_text()
    return set(re.findall(r"\breleasecache(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text))


def test_every_documented_name_imports():
    names = _documented_paths()
    assert len(names) > 20  # the documents were really read
    for dotted in sorted(names):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            break
        else:  # pragma: no cover - the package itself always imports
            pytest.fail(dotted)


def test_readme_api_names_import():
    from releasecache import CloudCache, Manifest, ProjectCache, compare_manifests  # the README's first line

    for method in ("from_s3", "from_local_cache", "get_ecephys_session_table", "get_ecephys_session",
                   "load_manifest", "compare_manifests"):
        assert callable(getattr(ProjectCache, method)), method
    for method in ("download_data", "download_metadata", "get_metadata", "data_path", "metadata_path"):
        assert callable(getattr(CloudCache, method)), method
    assert callable(compare_manifests) and callable(Manifest.from_path)
