"""Compare two manifests: what was created, deleted, changed or renamed.

Paths are compared as paths in the release (the URL key minus the project
prefix, e.g. ``project_metadata/units.csv``), the way users read them. A file
whose path disappeared while its exact content (hash) appeared under a new path
is reported as renamed rather than as one deletion plus one creation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping


from .model import FileEntry, Manifest

if TYPE_CHECKING:
    import pandas as pd

Kind = Literal["created", "deleted", "changed", "renamed"]
Section = Literal["metadata", "data"]

EQUIVALENT_TEXT = "The two manifests are equivalent"


@dataclass(frozen=True)
class Change:
    """One difference between two manifests."""

    kind: Kind
    section: Section
    path: str
    new_path: str | None = None
    old_hash: str | None = None
    new_hash: str | None = None
    old_version_id: str | None = None
    new_version_id: str | None = None
    file_id: str | None = None

    def __str__(self) -> str:
        if self.kind == "renamed":
            return f"{self.path} renamed {self.new_path}"
        return f"{self.path} {self.kind}"


class ManifestDiff(str):
    """The differences from manifest ``old`` to manifest ``new``, as AllenSDK's report text.

    A ``str`` whose text is exactly what AllenSDK's ``compare_manifests``
    returns, so ``"units.csv changed" in diff``, ``diff.splitlines()`` and
    ``print(diff)`` work as they always did::

        Changes going from
        <old manifest name>
        to
        <new manifest name>

        project_metadata/units.csv changed
        data/ecephys_session_1.nwb renamed data/moved.nwb

    (metadata files first, each group sorted by path; or ``The two manifests
    are equivalent``). On top of the text it carries the structured changes:
    :attr:`changes`, :attr:`created`, :attr:`deleted`, :attr:`changed`,
    :attr:`renamed`, :meth:`to_frame`, :meth:`to_dict`, :meth:`to_markdown`,
    :meth:`to_json`. Like any non-empty ``str`` it is always true; use
    :attr:`equivalent` to test for "no changes".

    ``details`` maps a changed path to what changed inside the file (a row diff
    of a CSV, a structural diff of an NWB file; see :mod:`releasecache.audit`):
    any object with ``summary_lines()``, ``to_markdown()`` and ``to_dict()``.
    ``str()``, ``print()``, :meth:`to_markdown` and :meth:`to_dict` show them
    under their change; the string's own text (``in``, ``==``,
    ``splitlines()``) stays AllenSDK's report.

    Parameters
    ----------
    old_version, new_version
        The two manifests' versions.
    changes
        The differences.
    details
        ``{path: content diff}`` for changed files (added later by audits, too).
    old_name, new_name
        The two manifests' file names, used in the report's header (the
        versions when not given).
    """

    old_version: str
    new_version: str
    old_name: str
    new_name: str
    changes: list[Change]
    details: dict[str, Any]

    def __new__(cls, old_version: str, new_version: str, changes: "list[Change] | tuple[Change, ...]" = (),
                details: dict[str, Any] | None = None, *, old_name: str | None = None,
                new_name: str | None = None) -> "ManifestDiff":
        changes = list(changes)
        return super().__new__(cls, _report_text(old_name or old_version, new_name or new_version, changes, {}))

    def __init__(self, old_version: str, new_version: str, changes: "list[Change] | tuple[Change, ...]" = (),
                 details: dict[str, Any] | None = None, *, old_name: str | None = None,
                 new_name: str | None = None) -> None:
        self.old_version, self.new_version = old_version, new_version
        self.old_name, self.new_name = old_name or old_version, new_name or new_version
        self.changes = list(changes)
        self.details = dict(details or {})

    def __reduce__(self) -> tuple[Any, ...]:  # str's own pickling would call __new__ with the text only
        return (_rebuild, (type(self), self.old_version, self.new_version, self.changes, self.details,
                           self.old_name, self.new_name))

    def __str__(self) -> str:
        # the text plus what audits found inside changed files (just the text when there is none)
        return _report_text(self.old_name, self.new_name, self.changes, self.details)

    def _of(self, kind: Kind) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def equivalent(self) -> bool:
        """True if the two manifests list the same content at the same paths."""
        return not self.changes

    @property
    def created(self) -> list[Change]:
        """Files present only in the new manifest."""
        return self._of("created")

    @property
    def deleted(self) -> list[Change]:
        """Files present only in the old manifest."""
        return self._of("deleted")

    @property
    def changed(self) -> list[Change]:
        """Files at the same path whose content changed."""
        return self._of("changed")

    @property
    def renamed(self) -> list[Change]:
        """Files whose content moved to a new path."""
        return self._of("renamed")

    @property
    def metadata_changes(self) -> list[Change]:
        """Changes to metadata (CSV) files."""
        return [c for c in self.changes if c.section == "metadata"]

    @property
    def data_changes(self) -> list[Change]:
        """Changes to data files."""
        return [c for c in self.changes if c.section == "data"]

    def to_frame(self) -> "pd.DataFrame":
        """One row per change, with paths, hashes and version ids."""
        columns = [f for f in Change.__dataclass_fields__]
        import pandas as pd  # imported here: plain downloads should not pay for pandas

        return pd.DataFrame([asdict(c) for c in self.changes], columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for ``--json`` output and audits)."""
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "old_name": self.old_name,
            "new_name": self.new_name,
            "equivalent": not self.changes,
            "changes": [{**asdict(c), **({"details": self.details[c.path].to_dict()} if c.path in self.details else {})}
                        for c in self.changes],
        }

    def to_markdown(self) -> str:
        """A Markdown release note of the changes."""
        if not self.changes:
            return f"{EQUIVALENT_TEXT}."
        out = [f"## Changes from {self.old_version} to {self.new_version}", ""]
        for kind in ("created", "deleted", "changed", "renamed"):
            group = self._of(kind)  # type: ignore[arg-type]
            if not group:
                continue
            out.append(f"### {kind.capitalize()} ({len(group)})")
            for c in group:
                out.append(f"- `{c.path}` → `{c.new_path}`" if c.new_path else f"- `{c.path}`")
                if c.path in self.details:
                    out.extend("  " + line for line in self.details[c.path].to_markdown().rstrip("\n").splitlines())
            out.append("")
        return "\n".join(out).rstrip() + "\n"

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=2)


def _report_text(old_name: str, new_name: str, changes: list[Change], details: dict[str, Any]) -> str:
    """AllenSDK's report: a header naming both manifests, then one line per change (and any details under it)."""
    if not changes:
        return EQUIVALENT_TEXT
    lines = ["Changes going from", old_name, "to", new_name, ""]
    for section in ("metadata", "data"):
        for change in sorted((c for c in changes if c.section == section), key=lambda c: c.path):
            lines.append(str(change))
            if change.path in details:
                lines.extend("    " + line for line in details[change.path].summary_lines())
    return "\n".join(lines) + "\n"


def _rebuild(cls: type, old_version: str, new_version: str, changes: list[Change], details: dict[str, Any],
             old_name: str, new_name: str) -> "ManifestDiff":
    """Unpickle a diff (or a subclass) from its parts, without the subclass's own constructor."""
    self = ManifestDiff.__new__(cls, old_version, new_version, changes, old_name=old_name, new_name=new_name)
    ManifestDiff.__init__(self, old_version, new_version, changes, details, old_name=old_name, new_name=new_name)
    return self


def _compare_section(old: Mapping[str, FileEntry], new: Mapping[str, FileEntry], section: Section) -> list[Change]:
    # Linear, and sorting only what changed. Two versions of a release usually list their files in
    # the same order: walk both side by side (memory read in order, no table), and pair the
    # entries that are not at the same place through a table of paths.
    changes: list[Change] = []
    old_rest: list[FileEntry] = []
    new_rest: list[FileEntry] = []
    for a, b in zip(old.values(), new.values()):
        if a.relative_path == b.relative_path:
            if a.file_hash != b.file_hash:
                changes.append(Change("changed", section, b.relative_path, None, a.file_hash, b.file_hash,
                                      a.version_id, b.version_id, b.name))
        else:
            old_rest.append(a)
            new_rest.append(b)
    old_rest.extend(islice(old.values(), len(new), None))
    new_rest.extend(islice(new.values(), len(old), None))
    unmatched = {e.relative_path: e for e in old_rest}  # old paths not (yet) seen in new
    fresh_unsorted: list[FileEntry] = []
    pop = unmatched.pop
    for b in new_rest:
        a = pop(b.relative_path, None)
        if a is None:
            fresh_unsorted.append(b)
        elif a.file_hash != b.file_hash:
            changes.append(Change("changed", section, b.relative_path, None, a.file_hash, b.file_hash,
                                  a.version_id, b.version_id, b.name))
    gone = {p: unmatched[p] for p in sorted(unmatched)}
    fresh = {e.relative_path: e for e in sorted(fresh_unsorted, key=lambda e: e.relative_path)}
    # A vanished path whose exact content reappears under a new path is a rename.
    fresh_by_hash: dict[str, list[str]] = {}
    for path, entry in fresh.items():
        fresh_by_hash.setdefault(entry.file_hash, []).append(path)
    for path, entry in gone.items():
        candidates = fresh_by_hash.get(entry.file_hash)
        if candidates:
            new_path = candidates.pop(0)
            b = fresh.pop(new_path)
            changes.append(Change("renamed", section, path, new_path, entry.file_hash, b.file_hash,
                                  entry.version_id, b.version_id, b.name))
        else:
            changes.append(Change("deleted", section, path, None, entry.file_hash, None,
                                  entry.version_id, None, entry.name))
    for path, entry in fresh.items():
        changes.append(Change("created", section, path, None, None, entry.file_hash,
                              None, entry.version_id, entry.name))
    order = {"changed": 0, "created": 1, "deleted": 2, "renamed": 3}
    changes.sort(key=lambda c: (c.path, order[c.kind]))
    return changes


def compare_manifests(old: Manifest | str | Path, new: Manifest | str | Path) -> ManifestDiff:
    """Compare two manifests (objects or paths to manifest JSON); no network.

    Parameters
    ----------
    old, new
        The earlier and the later manifest.

    Returns
    -------
    ManifestDiff
        A ``str`` with AllenSDK's report text (``project_metadata/units.csv
        changed``, one line per change, or "The two manifests are
        equivalent"), plus the structured changes.
    """
    a = old if isinstance(old, Manifest) else Manifest.from_path(old)
    b = new if isinstance(new, Manifest) else Manifest.from_path(new)
    changes = _compare_section(a.metadata_files, b.metadata_files, "metadata")
    changes += _compare_section(a.data_files, b.data_files, "data")
    return ManifestDiff(a.version, b.version, changes, old_name=a.name, new_name=b.name)
