"""Compare two manifests: what was created, deleted, changed or renamed.

Paths are compared as paths in the release (the URL key minus the project
prefix, e.g. ``project_metadata/units.csv``), the way users read them. A file
whose path disappeared while its exact content (hash) appeared under a new path
is reported as renamed rather than as one deletion plus one creation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal


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


@dataclass
class ManifestDiff:
    """The differences from manifest ``old`` to manifest ``new``.

    ``str(diff)`` gives the familiar text report, one line per change, metadata
    files first; ``to_frame()`` a table; ``bool(diff)`` is False when the two
    manifests are equivalent.

    ``details`` maps a changed path to what changed inside the file (a row diff
    of a CSV, a structural diff of an NWB file; see :mod:`releasecache.audit`):
    any object with ``summary_lines()``, ``to_markdown()`` and ``to_dict()``.
    Every report shows them under their change.
    """

    old_version: str
    new_version: str
    changes: list[Change] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict, repr=False)

    def _of(self, kind: Kind) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

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

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def __str__(self) -> str:
        if not self.changes:
            return EQUIVALENT_TEXT
        lines: list[str] = []
        for title, group in (("Changes to metadata files", self.metadata_changes),
                             ("Changes to data files", self.data_changes)):
            if group:
                lines.append(f"{title} ({self.old_version} -> {self.new_version}):")
                for c in group:
                    lines.append(str(c))
                    if c.path in self.details:
                        lines.extend("    " + line for line in self.details[c.path].summary_lines())
        return "\n".join(lines)

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


def _compare_section(old: dict[str, FileEntry], new: dict[str, FileEntry], section: Section) -> list[Change]:
    old_by_path = {e.relative_path: e for e in old.values()}
    new_by_path = {e.relative_path: e for e in new.values()}
    changes: list[Change] = []
    for path in sorted(old_by_path.keys() & new_by_path.keys()):
        a, b = old_by_path[path], new_by_path[path]
        if a.file_hash != b.file_hash:
            changes.append(Change("changed", section, path, None, a.file_hash, b.file_hash,
                                  a.version_id, b.version_id, b.name))
    gone = {p: old_by_path[p] for p in sorted(old_by_path.keys() - new_by_path.keys())}
    fresh = {p: new_by_path[p] for p in sorted(new_by_path.keys() - old_by_path.keys())}
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
        ``str()`` of it reads like ``project_metadata/units.csv changed``, one
        line per change, or "The two manifests are equivalent".
    """
    a = old if isinstance(old, Manifest) else Manifest.from_path(old)
    b = new if isinstance(new, Manifest) else Manifest.from_path(new)
    changes = _compare_section(dict(a.metadata_files), dict(b.metadata_files), "metadata")
    changes += _compare_section(dict(a.data_files), dict(b.data_files), "data")
    return ManifestDiff(a.version, b.version, changes)
