"""manifest/names.py: versions, names, and the one spec → name resolution."""

from __future__ import annotations

import pytest

from releasecache.errors import ManifestNotFoundError, ManifestVersionError
from releasecache.manifest import (
    manifest_name,
    match_manifest_name,
    resolve_manifest_spec,
    sort_manifest_names,
    version_from_manifest_name,
)

NAMES = [manifest_name("p", v) for v in ("0.10.0", "0.2.0", "0.9.1")]


def test_names_sort_by_semver_not_text():
    assert sort_manifest_names(NAMES + ["p_notes.json"]) == [NAMES[1], NAMES[2], NAMES[0]]
    assert str(version_from_manifest_name(NAMES[0])) == "0.10.0"
    with pytest.raises(ManifestVersionError):
        version_from_manifest_name("p_project_manifest_vbanana.json")


@pytest.mark.parametrize("spec, expected", [("0.9.1", NAMES[2]), ("v0.9.1", NAMES[2]), (NAMES[1], NAMES[1]),
                                            ("1.0.0", None), ("v", None)])
def test_match_by_name_or_version(spec, expected):
    assert match_manifest_name(spec, NAMES) == expected


def test_resolve_specials_and_errors():
    calls = []

    def names():
        calls.append("names")
        return NAMES

    def resolve(spec, last=None, latest=NAMES[0]):
        return resolve_manifest_spec(spec, names=names, latest=lambda: latest, last=lambda: last, project="p")

    assert resolve(None) == NAMES[0] and resolve("last") == NAMES[0]
    assert resolve(None, last=NAMES[1]) == NAMES[1]
    assert resolve("latest", last=NAMES[1]) == NAMES[0]
    assert resolve("other.json") == "other.json"
    assert calls == []  # the specials never list the remote
    assert resolve("0.2.0") == NAMES[1] and calls == ["names"]
    with pytest.raises(ManifestNotFoundError, match="available: p_project_manifest_v0.2.0.json"):
        resolve("3.0.0")
    with pytest.raises(ManifestNotFoundError):
        resolve("latest", latest=None)
    with pytest.raises(ManifestNotFoundError):
        resolve_manifest_spec("x.json", names=lambda: NAMES, latest=lambda: None, passthrough_json=False)
