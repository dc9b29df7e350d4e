"""What :func:`~releasecache.audit.nwb.diff_nwb` reports: value, object and file changes, as text or JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: Examples of changed elements kept per dataset.
EXAMPLES_PER_DATASET = 3


@dataclass
class ValueChange:
    """How the values of a dataset changed (same shape and dtype in both files).

    Attributes
    ----------
    elements
        Elements compared.
    differing
        Elements whose value differs (NaN equals NaN).
    scale
        If every differing element of a numeric dataset is the old value times
        one constant, that constant (``0.8`` for "divided by 1.25"); else None.
    examples
        Up to :data:`EXAMPLES_PER_DATASET` ``(index, old, new)`` triples.
    old_hash, new_hash
        blake2b of each file's values (over the blocks' hashes).
    """

    elements: int
    differing: int
    scale: float | None = None
    examples: list[tuple[Any, Any, Any]] = field(default_factory=list)
    old_hash: str = ""
    new_hash: str = ""

    def describe(self) -> str:
        """One line for people."""
        text = f"values: {self.differing} of {self.elements} elements differ"
        if self.scale is not None:
            text += f" (new = old × {_num(self.scale)}" + (
                f", i.e. divided by {_num(1 / self.scale)})" if self.scale not in (0.0,) else ")")
        elif self.examples:
            text += " (e.g. " + "; ".join(f"{_index(i)}: {_short(o)} -> {_short(n)}" for i, o, n in self.examples) + ")"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"elements": self.elements, "differing": self.differing, "scale": self.scale,
                "examples": [{"index": list(i) if isinstance(i, tuple) else i, "old": plain_value(o), "new": plain_value(n)}
                             for i, o, n in self.examples],
                "old_hash": self.old_hash, "new_hash": self.new_hash}


@dataclass
class ObjectChange:
    """One difference at one NWB path.

    Attributes
    ----------
    path
        The NWB path (``units/spike_amplitudes``), no leading slash.
    kind
        ``added``, ``removed`` or ``changed``.
    type
        ``group``, ``dataset``, ``soft link`` or ``external link``.
    shape, dtype
        ``(old, new)`` if the dataset's shape / dtype changed.
    attributes
        ``{name: (old, new)}`` of attributes that changed (None: absent on that side).
    values
        How the values changed, if the dataset was compared and differs.
    target
        ``(old, new)`` link targets, if a link points elsewhere.
    """

    path: str
    kind: str
    type: str
    shape: tuple[Any, Any] | None = None
    dtype: tuple[str, str] | None = None
    attributes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    values: ValueChange | None = None
    target: tuple[str | None, str | None] | None = None

    def details(self) -> list[str]:
        """What changed, one short phrase each."""
        out: list[str] = []
        if self.shape:
            out.append(f"shape {self.shape[0]} -> {self.shape[1]}")
        if self.dtype:
            out.append(f"dtype {self.dtype[0]} -> {self.dtype[1]}")
        for name, (old, new) in self.attributes.items():
            if old is None:
                out.append(f"attribute {name} added ({_short(new)})")
            elif new is None:
                out.append(f"attribute {name} removed")
            else:
                out.append(f"attribute {name}: {_short(old)} -> {_short(new)}")
        if self.target:
            out.append(f"link target {self.target[0]} -> {self.target[1]}")
        if self.values is not None:
            out.append(self.values.describe())
        return out

    def __str__(self) -> str:
        details = "; ".join(self.details())
        return f"{self.path} {self.kind} ({self.type}{': ' + details if details else ''})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": self.path, "kind": self.kind, "type": self.type,
                "shape": None if self.shape is None else [list(s) if s is not None else None for s in self.shape],
                "dtype": None if self.dtype is None else list(self.dtype),
                "attributes": {k: {"old": plain_value(o), "new": plain_value(n)} for k, (o, n) in self.attributes.items()},
                "values": None if self.values is None else self.values.to_dict(),
                "target": None if self.target is None else list(self.target)}


@dataclass
class NwbDiff:
    """The structural differences between two NWB files.

    Attributes
    ----------
    changes
        One :class:`ObjectChange` per NWB path that differs, sorted by path.
    objects_old, objects_new
        Number of groups, datasets and links walked in each file.
    datasets_compared
        Datasets whose values were compared.
    bytes_read_old, bytes_read_new
        Bytes fetched from each source, when it counts them (a streamed
        :class:`~releasecache.transfer.stream.RemoteFile`); else None.
    size_old, size_new
        Sizes of the two files, when known.
    path, old_version, new_version
        Labels for reports.
    """

    changes: list[ObjectChange]
    objects_old: int
    objects_new: int
    datasets_compared: int
    bytes_read_old: int | None = None
    bytes_read_new: int | None = None
    size_old: int | None = None
    size_new: int | None = None
    path: str | None = None
    old_version: str | None = None
    new_version: str | None = None
    values_compared: bool = True

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def __getitem__(self, path: str) -> ObjectChange:
        for change in self.changes:
            if change.path == path.strip("/"):
                return change
        raise KeyError(path)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and any(c.path == path.strip("/") for c in self.changes)

    def _of(self, kind: str) -> list[ObjectChange]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def added(self) -> list[ObjectChange]:
        """Objects only in the new file."""
        return self._of("added")

    @property
    def removed(self) -> list[ObjectChange]:
        """Objects only in the old file."""
        return self._of("removed")

    @property
    def changed(self) -> list[ObjectChange]:
        """Objects in both files that differ."""
        return self._of("changed")

    @property
    def paths(self) -> list[str]:
        """The NWB paths that differ."""
        return [c.path for c in self.changes]

    def summary_lines(self) -> list[str]:
        """A short plain-text summary, one change per line."""
        compared = (f"{self.datasets_compared} datasets compared" if self.values_compared
                    else "values not compared")
        if not self.changes:
            lines = ["same groups, datasets and attributes" + (" and values" if self.values_compared else "")
                     + f" ({compared})"]
            read = self.read_summary()
            return lines + ([read] if read else [])
        counts = ", ".join(f"{len(self._of(k))} {k}" for k in ("added", "removed", "changed") if self._of(k))
        lines = [f"{len(self.changes)} NWB objects differ ({counts}; {compared})"]
        lines += [str(c) for c in self.changes]
        read = self.read_summary()
        if read:
            lines.append(read)
        return lines

    def read_summary(self) -> str | None:
        """How much of each file was fetched (for streamed files)."""
        parts = []
        for label, read, size in (("old", self.bytes_read_old, self.size_old), ("new", self.bytes_read_new,
                                                                                 self.size_new)):
            if read is not None:
                part = f"{label} {read} bytes"
                if size:
                    part += f" of {size} ({read / size:.0%})"
                parts.append(part)
        return ("streamed: " + ", ".join(parts)) if parts else None

    def __str__(self) -> str:
        head = self.path or "NWB file"
        if self.old_version or self.new_version:
            head += f" ({self.old_version} -> {self.new_version})"
        return "\n".join([head + ":", *("  " + line for line in self.summary_lines())])

    def to_markdown(self) -> str:
        """The summary as Markdown bullet points."""
        lines = self.summary_lines()
        out = [f"- {lines[0]}"]
        for change in self.changes:
            details = "; ".join(change.details())
            out.append(f"  - `{change.path}` {change.kind} ({change.type}{': ' + details if details else ''})")
        read = self.read_summary()
        if read and self.changes:
            out.append(f"  - {read}")
        elif read:
            out[0] += f"; {read}"
        return "\n".join(out) + "\n"

    def to_frame(self) -> "pd.DataFrame":
        """One row per changed NWB path: kind, type, and what changed."""
        import pandas as pd

        return pd.DataFrame({"kind": [c.kind for c in self.changes], "type": [c.type for c in self.changes],
                             "details": ["; ".join(c.details()) for c in self.changes]},
                            index=pd.Index(self.paths, name="nwb_path"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": self.path, "old_version": self.old_version, "new_version": self.new_version,
                "objects_old": self.objects_old, "objects_new": self.objects_new,
                "datasets_compared": self.datasets_compared, "values_compared": self.values_compared,
                "bytes_read_old": self.bytes_read_old,
                "bytes_read_new": self.bytes_read_new, "size_old": self.size_old, "size_new": self.size_new,
                "changes": [c.to_dict() for c in self.changes]}


# -- formatting helpers ----------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.6g}"


def _index(index: Any) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]" if isinstance(index, tuple) else f"[{index}]"


def plain_value(value: Any) -> Any:
    """A JSON-friendly version of an attribute or element value."""
    if isinstance(value, np.ndarray):
        return [plain_value(v) for v in value.tolist()] if value.size <= 16 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def _short(value: Any, limit: int = 60) -> str:
    value = plain_value(value)
    text = f"{value:.6g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


__all__ = ["EXAMPLES_PER_DATASET", "NwbDiff", "ObjectChange", "ValueChange", "plain_value"]
