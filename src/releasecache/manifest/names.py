"""Manifest names and semantic versions: ``"0.4.0"``, ``"latest"``, ``"last"`` → a manifest file name.

One place for every mapping between a version spec, a semver and a manifest
file name, used by the library and the command line alike.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

import semver

from ..errors import ManifestNotFoundError, ManifestVersionError
from ..utils import short_repr

_VERSION_IN_NAME_RE = re.compile(r"_v(?P<version>[^/\\]+)\.json$")


def parse_semver(text: str, *, what: str = "version") -> semver.Version:
    """Parse ``text`` as a semantic version or raise :class:`ManifestVersionError`."""
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError) as exc:
        detail = f": {exc}" if len(str(text)) <= 200 else ""
        raise ManifestVersionError(f"{what} {short_repr(text)} is not a semantic version (like 0.4.0){detail}") from None


def version_from_manifest_name(name: str) -> semver.Version:
    """Return the semver in a manifest file name ``<anything>_v<semver>.json``.

    Examples
    --------
    >>> str(version_from_manifest_name("visual-behavior-neuropixels_project_manifest_v0.4.0.json"))
    '0.4.0'
    """
    match = _VERSION_IN_NAME_RE.search(name)
    if not match:
        raise ManifestVersionError(f"manifest name {short_repr(name)} does not end in _v<semver>.json",
                                   manifest=name)
    return parse_semver(match.group("version"), what=f"version in manifest name {short_repr(name)}")


def sort_manifest_names(names: list[str] | tuple[str, ...] | set[str]) -> list[str]:
    """Sort manifest file names by their semver (not lexically: 0.10.0 > 0.9.0).

    Names without a parsable version are dropped; they are not manifests.
    """
    parsed = []
    for name in names:
        try:
            parsed.append((version_from_manifest_name(name), name))
        except ManifestVersionError:
            continue
    return [name for _, name in sorted(parsed)]


def manifest_name(project: str, version: str, *, style: str = "project_manifest") -> str:
    """The conventional file name of a manifest: ``<project>_project_manifest_v<version>.json``."""
    return f"{project}_{style}_v{version}.json"



def match_manifest_name(spec: str, names: Iterable[str]) -> str | None:
    """The name in ``names`` that ``spec`` means, or None.

    ``spec`` is a manifest name in ``names``, or a version (``0.4.0`` or
    ``v0.4.0``) that one of them carries.
    """
    names = list(names)
    if spec in names:
        return spec
    wanted = spec[1:] if spec.startswith("v") else spec
    for name in sort_manifest_names(names):
        if str(version_from_manifest_name(name)) == wanted:
            return name
    return None


def resolve_manifest_spec(spec: str | None, *, names: Callable[[], Iterable[str]],
                          latest: Callable[[], str | None], last: Callable[[], str | None] = lambda: None,
                          project: str = "", passthrough_json: bool = True) -> str:
    """Turn a version spec into a manifest name.

    Parameters
    ----------
    spec
        ``None`` or ``"last"``: the manifest used last (``last()``), else the
        latest; ``"latest"``: ``latest()``; a name ending in ``.json``: that name
        (if ``passthrough_json``); ``0.4.0`` / ``v0.4.0``: the manifest of that version.
    names, latest, last
        Called only when needed, so that a lookup lists the remote at most once.
    project
        For the error message.

    Raises
    ------
    ManifestNotFoundError
        If nothing matches.
    """
    if spec is None or spec == "last":
        name = last()
        if name is not None:
            return name
        spec = "latest"
    if spec == "latest":
        name = latest()
        if name is None:
            raise ManifestNotFoundError(f"no manifest of project {project!r} is known")
        return name
    if passthrough_json and spec.endswith(".json"):
        return spec
    known = list(names())
    found = match_manifest_name(spec, known)
    if found is None:
        raise ManifestNotFoundError(f"no manifest {spec!r} for project {project!r}; "
                                    f"available: {', '.join(sort_manifest_names(known)) or 'none'}", manifest=spec)
    return found
