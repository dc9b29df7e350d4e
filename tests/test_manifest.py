"""Manifest parsing, URL mapping, semver order, and refusal of bad manifests."""

from __future__ import annotations

import copy
import json

import pytest

from releasecache.errors import (
    ManifestParseError,
    ManifestValidationError,
    ManifestVersionError,
    ReleaseCacheError,
    UnsafePathError,
)
from releasecache.manifest import Manifest, parse_s3_url, sort_manifest_names, version_from_manifest_name

pytestmark = pytest.mark.unit  # no server: part of the fast layer subset (pytest -m unit)

H = "ab" * 64
BUCKET = "visual-behavior-neuropixels-data"
URL = f"https://{BUCKET}.s3.us-west-2.amazonaws.com/visual-behavior-neuropixels"


def doc(**overrides):
    base = {
        "project_name": "visual-behavior-neuropixels",
        "manifest_version": "0.4.0",
        "metadata_file_id_column_name": "file_id",
        "data_pipeline": [{"name": "AllenSDK", "version": "2.16.2", "comment": ""}],
        "metadata_files": {"units": {"url": f"{URL}/project_metadata/units.csv", "version_id": "v1", "file_hash": H}},
        "data_files": {"870": {"url": f"{URL}/behavior_ecephys_sessions/1044385384/ecephys_session_1044385384.nwb",
                               "version_id": "K.aZm6HBR3BA7B4W3goi5QUTIGy9FfTD", "file_hash": "cd" * 64}},
    }
    base.update(overrides)
    return base


def test_parses_real_style_manifest():
    m = Manifest.from_bytes(json.dumps(doc()).encode(), name="visual-behavior-neuropixels_project_manifest_v0.4.0.json")
    assert m.version == "0.4.0" and m.project_name == "visual-behavior-neuropixels"
    assert m.view_dir_name == "visual-behavior-neuropixels-0.4.0"
    units = m.metadata_files["units"]
    assert units.relative_path == "project_metadata/units.csv"
    assert (units.bucket, units.key) == (BUCKET, "visual-behavior-neuropixels/project_metadata/units.csv")
    session = m.data_files["870"]
    assert session.relative_path == "behavior_ecephys_sessions/1044385384/ecephys_session_1044385384.nwb"
    assert session.location.version_id == "K.aZm6HBR3BA7B4W3goi5QUTIGy9FfTD"
    assert m.pipeline_version() == "2.16.2"
    assert m.metadata_file_names == ["units"]


@pytest.mark.parametrize("url, bucket, key", [
    ("https://b-1.s3.us-west-2.amazonaws.com/p/x.csv", "b-1", "p/x.csv"),
    ("https://b-1.s3.amazonaws.com/p/x.csv", "b-1", "p/x.csv"),
    ("http://b-1.s3-us-west-2.amazonaws.com/p/x.csv", "b-1", "p/x.csv"),
    ("https://b-1.s3.dualstack.eu-west-1.amazonaws.com/p/a%20b.csv", "b-1", "p/a b.csv"),
    ("https://s3.us-west-2.amazonaws.com/b-1/p/x.csv", "b-1", "p/x.csv"),
    ("https://s3.amazonaws.com/b-1/p/x.csv", "b-1", "p/x.csv"),
    ("https://s3-us-west-2.amazonaws.com/b-1/p/x.csv", "b-1", "p/x.csv"),
    ("s3://b-1/p/x.csv", "b-1", "p/x.csv"),
    ("http://127.0.0.1:9000/b-1/p/x.csv", "b-1", "p/x.csv"),
    ("https://my.bucket.name.s3.us-east-2.amazonaws.com/p/x.csv", "my.bucket.name", "p/x.csv"),
])
def test_url_styles(url, bucket, key):
    assert parse_s3_url(url) == (bucket, key)


def test_semver_order_not_lexical():
    names = ["p_manifest_v0.10.0.json", "p_manifest_v0.9.0.json", "p_manifest_v0.2.0.json",
             "p_project_manifest_v1.0.0-rc.1.json", "p_project_manifest_v1.0.0.json", "notes.json"]
    assert sort_manifest_names(names) == ["p_manifest_v0.2.0.json", "p_manifest_v0.9.0.json", "p_manifest_v0.10.0.json",
                                          "p_project_manifest_v1.0.0-rc.1.json", "p_project_manifest_v1.0.0.json"]
    assert str(version_from_manifest_name("visual-behavior-neuropixels_project_manifest_v0.4.0.json")) == "0.4.0"
    with pytest.raises(ManifestVersionError):
        version_from_manifest_name("p_manifest_vX.json")


def _mutate(path, value):
    d = doc()
    target = d
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(d).encode()


BAD = [
    ("malformed JSON", b'{"project_name": ', ManifestParseError),
    ("not an object", b"[1, 2]", ManifestValidationError),
    ("missing key", _mutate(["data_files"], KeyError), ManifestValidationError),
    ("wrong type", _mutate(["metadata_files"], []), ManifestValidationError),
    ("entry wrong type", _mutate(["data_files", "870", "version_id"], 5), ManifestValidationError),
    ("entry missing hash", _mutate(["data_files", "870", "file_hash"], KeyError), ManifestValidationError),
    ("short hash", _mutate(["data_files", "870", "file_hash"], "ab" * 10), ManifestValidationError),
    ("non-hex hash", _mutate(["data_files", "870", "file_hash"], "zz" * 64), ManifestValidationError),
    ("bad version", _mutate(["manifest_version"], "four"), ManifestVersionError),
    ("dotdot key", _mutate(["data_files", "870", "url"], f"{URL}/../../etc/passwd"), UnsafePathError),
    ("encoded dotdot", _mutate(["data_files", "870", "url"], f"{URL}/%2e%2e/%2e%2e/x"), UnsafePathError),
    ("backslash", _mutate(["data_files", "870", "url"], f"{URL}/a\\b.nwb"), UnsafePathError),
    ("NUL", _mutate(["data_files", "870", "url"], f"{URL}/a%00b.nwb"), UnsafePathError),
    ("file scheme", _mutate(["data_files", "870", "url"], "file:///etc/passwd"), UnsafePathError),
    ("project with slash", _mutate(["project_name"], "../x"), UnsafePathError),
    ("duplicate JSON key", b'{"project_name": "a", "project_name": "b"}', ManifestValidationError),
]


@pytest.mark.parametrize("label, data, error", BAD, ids=[b[0] for b in BAD])
def test_bad_manifests_rejected(label, data, error):
    with pytest.raises(error) as info:
        Manifest.from_bytes(data, name="p_manifest_v1.0.0.json")
    assert isinstance(info.value, ReleaseCacheError)
    assert str(info.value)  # a message a person can read


def test_two_entries_on_one_path_rejected():
    d = doc()
    d["data_files"]["871"] = copy.deepcopy(d["data_files"]["870"])
    with pytest.raises(ManifestValidationError, match="both map to"):
        Manifest.from_dict(d)


def test_enormous_document_rejected(tmp_path, monkeypatch):
    import releasecache.manifest.model as mod

    monkeypatch.setattr(mod, "MAX_MANIFEST_BYTES", 1000)
    path = tmp_path / "p_manifest_v1.0.0.json"
    path.write_bytes(b" " * 2000)
    with pytest.raises(ManifestParseError, match="larger than"):
        Manifest.from_path(path)
