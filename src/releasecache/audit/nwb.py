"""Structural diff of two NWB (HDF5) files: what changed inside a data file between two versions.

:func:`diff_nwb` walks both files' link trees with h5py and reports, as NWB paths
(``units/spike_amplitudes``, ``general/subject/age``):

* groups, datasets and links added or removed;
* datasets whose shape or dtype changed;
* attributes added, removed or changed, on groups and datasets;
* datasets whose values changed.

Values are compared by chunked hashing: each dataset present in both files with
the same shape and dtype is read in blocks of rows (``block_bytes`` at a time)
from both files in step; each block is hashed (blake2b) and only a block whose
hashes differ is compared element by element, to count the differing elements,
keep a few examples and notice a constant scale factor (``new = old × 0.8``).
So each file is read once and memory holds two blocks. The files may be paths
or any seekable binary file objects, e.g. :class:`~releasecache.transfer.stream.RemoteFile`
streams of both pinned versions (then only HDF5 metadata and the compared
datasets are fetched; ``paths=`` narrows that further).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from ..errors import NwbLayoutError
from ..utils import new_hasher

if TYPE_CHECKING:
    import h5py
    import pandas as pd

#: Bytes of one dataset read at once from each file.
DEFAULT_BLOCK_BYTES = 8 * 1024 * 1024
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
                "examples": [{"index": list(i) if isinstance(i, tuple) else i, "old": _plain(o), "new": _plain(n)}
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
                "attributes": {k: {"old": _plain(o), "new": _plain(n)} for k, (o, n) in self.attributes.items()},
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


def _plain(value: Any) -> Any:
    """A JSON-friendly version of an attribute or element value."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.size <= 16 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def _short(value: Any, limit: int = 60) -> str:
    value = _plain(value)
    text = f"{value:.6g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


# -- reading ---------------------------------------------------------------------------------


@dataclass
class _Entry:
    type: str  # group, dataset, soft link, external link
    target: str | None = None


def _walk(h5: "h5py.File", prefixes: tuple[str, ...]) -> dict[str, _Entry]:
    """Every link in the file by path: groups and datasets (hard links), soft and external links."""
    import h5py

    out: dict[str, _Entry] = {}

    def visit(name: str, link: Any) -> None:
        if prefixes and not any(name == p or name.startswith(p + "/") or p.startswith(name + "/") for p in prefixes):
            return
        if isinstance(link, h5py.SoftLink):
            out[name] = _Entry("soft link", link.path.lstrip("/"))
        elif isinstance(link, h5py.ExternalLink):
            out[name] = _Entry("external link", f"{link.filename}:{link.path}")
        else:
            obj = h5.get(name)
            out[name] = _Entry("group" if isinstance(obj, h5py.Group) else "dataset")

    h5.visititems_links(visit)
    if prefixes:  # keep only what lies under a requested prefix (ancestors were visited to get there)
        out = {n: e for n, e in out.items() if any(n == p or n.startswith(p + "/") for p in prefixes)}
    return out


def _attr_value(h5: "h5py.File", value: Any) -> Any:
    """An attribute's value, with object references replaced by the paths they point to."""
    import h5py

    if isinstance(value, h5py.Reference):
        return _ref_name(h5, value)
    if isinstance(value, np.ndarray) and value.dtype == object:
        return np.array([_ref_name(h5, v) if isinstance(v, h5py.Reference) else _decode(v) for v in value.flat],
                        dtype=object).reshape(value.shape)
    return _decode(value)


def _decode(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _ref_name(h5: "h5py.File", ref: Any) -> str | None:
    if not ref:
        return None
    try:
        return h5[ref].name.lstrip("/")
    except (KeyError, ValueError, TypeError):
        return "<dangling reference>"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        if a_arr.shape != b_arr.shape:
            return False
        if a_arr.dtype.kind == "f" and b_arr.dtype.kind == "f":
            return bool(np.array_equal(a_arr, b_arr, equal_nan=True))
        return bool(np.array_equal(a_arr, b_arr))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return repr(a) == repr(b)


def _attributes(h5: "h5py.File", obj: Any) -> dict[str, Any]:
    out = {}
    for name in obj.attrs:
        try:
            out[name] = _attr_value(h5, obj.attrs[name])
        except (OSError, TypeError) as exc:  # a type h5py cannot read: compare its description
            out[name] = f"<unreadable attribute: {exc}>"
    return out


def _attr_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    changes: dict[str, tuple[Any, Any]] = {}
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if name not in old or name not in new or not _same(a, b):
            changes[name] = (a, b)
    return changes


def _blocks(dset: Any, block_bytes: int) -> Iterator[np.ndarray]:
    """A dataset's values in blocks of whole rows (axis 0), about ``block_bytes`` each."""
    if dset.shape is None:  # an empty (null dataspace) dataset
        return
    if dset.ndim == 0:
        yield np.asarray(dset[()])
        return
    row_bytes = max(1, int(np.prod(dset.shape[1:], dtype=np.int64)) * max(1, dset.dtype.itemsize))
    step = max(1, block_bytes // row_bytes)
    if dset.chunks:  # whole chunks along axis 0, so no chunk is decompressed twice
        step = max(dset.chunks[0], step // dset.chunks[0] * dset.chunks[0])
    for start in range(0, dset.shape[0], step):
        yield np.asarray(dset[start:start + step])


def _canonical(h5: "h5py.File", block: np.ndarray) -> np.ndarray:
    """Blocks as comparable values: references become target paths, bytes become text."""
    import h5py

    if block.dtype == object or block.dtype.kind in "SO" or h5py.check_dtype(ref=block.dtype) is not None:
        flat = [_ref_name(h5, v) if isinstance(v, h5py.Reference) else _decode(v) for v in block.flat]
        return np.array(flat, dtype=object).reshape(block.shape)
    return block


def _block_hash(block: np.ndarray) -> bytes:
    if block.dtype == object:
        data = "\x1f".join("\x00" if v is None else str(v) for v in block.flat).encode("utf-8", "surrogatepass")
    elif block.dtype.names:  # compound: hash field by field so padding cannot differ
        data = b"".join(_block_hash(np.ascontiguousarray(block[name])) for name in block.dtype.names)
    else:
        data = np.ascontiguousarray(block).tobytes()
    hasher = new_hasher(digest_size=32)
    hasher.update(data)
    return hasher.digest()


class _ValueTally:
    """Accumulates the element comparison of the blocks whose hashes differ."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.differing = 0
        self.examples: list[tuple[Any, Any, Any]] = []
        self.ratio_lo = math.inf
        self.ratio_hi = -math.inf
        self.scalable = True

    def add(self, a: np.ndarray, b: np.ndarray, offset: int) -> None:
        if a.dtype == object or a.dtype.names:
            flat_a, flat_b = a.reshape(-1), b.reshape(-1)
            differs = np.array([not _same(x, y) for x, y in zip(flat_a, flat_b)], dtype=bool).reshape(a.shape)
            self.scalable = False
        else:
            differs = a != b
            if a.dtype.kind == "f":
                differs &= ~(np.isnan(a) & np.isnan(b))
        count = int(np.count_nonzero(differs))
        if not count:
            return
        self.differing += count
        where = np.argwhere(differs) if a.ndim else np.zeros((1, 0), dtype=np.intp)
        for position in where[:EXAMPLES_PER_DATASET - len(self.examples)]:
            index = tuple(int(i) for i in position)
            full = (index[0] + offset, *index[1:]) if index else ()
            label: Any = full if len(full) != 1 else full[0]
            self.examples.append((label, _plain(a[index]), _plain(b[index])))
        if self.scalable and a.dtype.kind in "fiu":
            old, new = a[differs].astype(np.float64), b[differs].astype(np.float64)
            if np.any(old == 0) or not np.all(np.isfinite(old)) or not np.all(np.isfinite(new)):
                self.scalable = False
            else:
                ratio = new / old
                self.ratio_lo = min(self.ratio_lo, float(ratio.min()))
                self.ratio_hi = max(self.ratio_hi, float(ratio.max()))
        else:
            self.scalable = False

    def scale(self) -> float | None:
        if not self.scalable or self.differing < 2 or not math.isfinite(self.ratio_lo):  # one change is no pattern
            return None
        mid = (self.ratio_lo + self.ratio_hi) / 2
        # Values stored as float32 or rounded carry relative errors of ~1e-7; anything wider is not a scale.
        return round(mid, 6) if abs(self.ratio_hi - self.ratio_lo) <= 1e-5 * abs(mid) else None


def _compare_values(h5a: Any, h5b: Any, a: Any, b: Any, block_bytes: int) -> ValueChange | None:
    """Read both datasets once, block by block; None if every block hashes the same."""
    hash_a, hash_b = new_hasher(digest_size=32), new_hasher(digest_size=32)
    tally = _ValueTally(a.shape or ())
    offset = 0
    for block_a, block_b in zip(_blocks(a, block_bytes), _blocks(b, block_bytes)):
        block_a, block_b = _canonical(h5a, block_a), _canonical(h5b, block_b)
        digest_a, digest_b = _block_hash(block_a), _block_hash(block_b)
        hash_a.update(digest_a)
        hash_b.update(digest_b)
        if digest_a != digest_b:
            tally.add(block_a, block_b, offset)
        offset += block_a.shape[0] if block_a.ndim else 1
    if hash_a.digest() == hash_b.digest() or not tally.differing:
        return None
    elements = int(np.prod(a.shape, dtype=np.int64)) if a.shape else 1
    return ValueChange(elements, tally.differing, tally.scale(), tally.examples, hash_a.hexdigest(),
                       hash_b.hexdigest())


def _open(source: Any) -> "h5py.File":
    import h5py

    try:
        if isinstance(source, (str, os.PathLike)):
            return h5py.File(os.fspath(source), "r")
        return h5py.File(source, "r")
    except OSError as exc:
        raise NwbLayoutError(f"{getattr(source, 'name', source)} is not a readable HDF5/NWB file: {exc}") from None


def _size(source: Any) -> int | None:
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).stat().st_size
        except OSError:
            return None
    return getattr(source, "size", None)


def diff_nwb(old: Any, new: Any, *, paths: Iterable[str] | None = None, compare_values: bool = True,
             block_bytes: int = DEFAULT_BLOCK_BYTES, path: str | None = None, old_version: str | None = None,
             new_version: str | None = None) -> NwbDiff:
    """Compare two NWB (HDF5) files group by group, dataset by dataset.

    Parameters
    ----------
    old, new
        Paths, or seekable binary file objects (e.g. streamed
        :class:`~releasecache.transfer.stream.RemoteFile` objects).
    paths
        Only compare these NWB paths and what lies below them (``["units"]``).
    compare_values
        Compare dataset values (by chunked hashing); False compares only the
        structure, shapes, dtypes and attributes (reads only HDF5 metadata).
    block_bytes
        About how many bytes of one dataset to read at once from each file.
    path, old_version, new_version
        Labels for the reports.

    Returns
    -------
    NwbDiff

    Raises
    ------
    NwbLayoutError
        If either file is not a readable HDF5 file.
    """
    import h5py

    prefixes = tuple(p.strip("/") for p in (paths or ()) if p.strip("/"))
    h5a = _open(old)
    try:
        h5b = _open(new)
    except BaseException:
        h5a.close()
        raise
    changes: list[ObjectChange] = []
    compared = 0
    try:
        tree_a, tree_b = _walk(h5a, prefixes), _walk(h5b, prefixes)
        root_attrs = _attr_changes(_attributes(h5a, h5a), _attributes(h5b, h5b)) if not prefixes else {}
        if root_attrs:
            changes.append(ObjectChange("/", "changed", "group", attributes=root_attrs))
        for name in sorted(tree_a.keys() | tree_b.keys()):
            ea, eb = tree_a.get(name), tree_b.get(name)
            if eb is None:
                changes.append(ObjectChange(name, "removed", ea.type))  # type: ignore[union-attr]
                continue
            if ea is None:
                changes.append(ObjectChange(name, "added", eb.type))
                continue
            if ea.type != eb.type:
                changes.append(ObjectChange(name, "changed", f"{ea.type} -> {eb.type}"))
                continue
            if ea.type in ("soft link", "external link"):
                if ea.target != eb.target:
                    changes.append(ObjectChange(name, "changed", ea.type, target=(ea.target, eb.target)))
                continue
            a, b = h5a[name], h5b[name]
            change = ObjectChange(name, "changed", ea.type,
                                  attributes=_attr_changes(_attributes(h5a, a), _attributes(h5b, b)))
            if ea.type == "dataset":
                if a.shape != b.shape:
                    change.shape = (a.shape, b.shape)
                if a.dtype != b.dtype:
                    change.dtype = (str(a.dtype), str(b.dtype))
                if compare_values and change.shape is None and change.dtype is None:
                    compared += 1
                    change.values = _compare_values(h5a, h5b, a, b, block_bytes)
            if change.shape or change.dtype or change.attributes or change.values:
                changes.append(change)
        objects = (len(tree_a), len(tree_b))
    except (OSError, RuntimeError) as exc:
        raise NwbLayoutError(f"cannot read {path or 'the NWB files'}: {exc}") from None
    finally:
        h5b.close()
        h5a.close()
    del h5py
    return NwbDiff(changes, objects[0], objects[1], compared,
                   bytes_read_old=getattr(old, "bytes_read", None), bytes_read_new=getattr(new, "bytes_read", None),
                   size_old=_size(old), size_new=_size(new), path=path, old_version=old_version,
                   new_version=new_version, values_compared=compare_values)


__all__ = ["DEFAULT_BLOCK_BYTES", "NwbDiff", "ObjectChange", "ValueChange", "diff_nwb"]
