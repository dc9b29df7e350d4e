"""Row-level diff of two versions of a metadata CSV, keyed by the table's id column.

:func:`diff_tables` answers "what changed inside ``units.csv``": rows added and
removed (by id), rows whose values changed, and for each changed column how
many rows changed with a few examples (old → new); columns added or removed;
columns whose dtype changed (as :func:`pandas.read_csv` would type them).

Memory stays bounded on the full-scale tables (≈320,000 units × 36 columns):
the two id columns are read first and aligned, then the shared columns are read
a few at a time (Arrow's CSV reader parses only the requested columns into
memory) and compared column by column, keeping only the positions of changed
rows. Values are compared as typed values, so ``1e-05`` and ``0.00001`` are
equal, and NaN equals NaN.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ..errors import MetadataTableError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

#: Index column of each known VBN table (the same as the typed table readers use).
KNOWN_ID_COLUMNS: dict[str, str] = {
    "ecephys_sessions": "ecephys_session_id",
    "behavior_sessions": "behavior_session_id",
    "probes": "ecephys_probe_id",
    "channels": "ecephys_channel_id",
    "units": "unit_id",
}

#: Examples of changed values kept per column.
EXAMPLES_PER_COLUMN = 3
#: Ids listed in text reports (added, removed, changed rows).
IDS_SHOWN = 5
#: Default memory for the columns read at once, per file (bytes).
DEFAULT_MEMORY_BUDGET = 32 * 1024 * 1024
#: Bytes of CSV text parsed at a time.
STREAM_BLOCK = 256 << 10


@dataclass
class ColumnChange:
    """How one shared column changed between two versions of a table.

    Attributes
    ----------
    column
        The column name.
    rows
        Number of rows (present in both versions) whose value changed.
    examples
        Up to :data:`EXAMPLES_PER_COLUMN` ``(id, old, new)`` triples.
    """

    column: str
    rows: int
    examples: list[tuple[Any, Any, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"column": self.column, "rows": self.rows,
                "examples": [{"id": i, "old": o, "new": n} for i, o, n in self.examples]}


@dataclass
class TableDiff:
    """The row-level differences from one version of a metadata table to another.

    Attributes
    ----------
    name
        Table name (``units``), the CSV name without ``.csv``.
    id_column
        The column rows are matched by.
    old_rows, new_rows
        Row counts of the two versions.
    added, removed
        Ids present only in the new / only in the old version (sorted).
    changed
        Ids present in both whose values differ in at least one shared column (sorted).
    columns_added, columns_removed
        Column names present only in the new / only in the old version.
    dtype_changes
        ``{column: (old dtype, new dtype)}`` for shared columns, as ``pandas.read_csv`` types them.
    column_changes
        ``{column: ColumnChange}`` for shared columns with changed values, in column order.
    duplicate_ids
        Ids listed more than once in either version (only the first row of each is compared).
    old_version, new_version, path
        Labels for reports (set by the caller; may be None).
    """

    name: str
    id_column: str
    old_rows: int
    new_rows: int
    added: np.ndarray
    removed: np.ndarray
    changed: np.ndarray
    columns_added: list[str]
    columns_removed: list[str]
    dtype_changes: dict[str, tuple[str, str]]
    column_changes: dict[str, ColumnChange]
    duplicate_ids: list[Any] = field(default_factory=list)
    old_version: str | None = None
    new_version: str | None = None
    path: str | None = None
    _changed_by_column: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return bool(len(self.added) or len(self.removed) or len(self.changed) or self.columns_added
                    or self.columns_removed or self.dtype_changes)

    @property
    def equivalent(self) -> bool:
        """True if the two versions hold the same rows and values (the bytes may still differ)."""
        return not self

    def changed_columns_of(self, row_id: Any) -> list[str]:
        """The shared columns whose value changed in the row ``row_id``."""
        return [c for c, ids in self._changed_by_column.items() if np.isin(row_id, ids)]

    def to_frame(self) -> "pd.DataFrame":
        """One row per added, removed or changed id: ``id``, ``change``, ``columns`` (changed columns).

        Indexed by the table's id column.
        """
        import pandas as pd

        columns_of: dict[Any, list[str]] = {}
        for column, ids in self._changed_by_column.items():
            for row_id in ids.tolist():
                columns_of.setdefault(row_id, []).append(column)
        ids = [*self.added.tolist(), *self.removed.tolist(), *self.changed.tolist()]
        kinds = ["added"] * len(self.added) + ["removed"] * len(self.removed) + ["changed"] * len(self.changed)
        frame = pd.DataFrame({"change": kinds, "columns": [columns_of.get(i, []) for i in ids]},
                             index=pd.Index(ids, name=self.id_column))
        return frame

    def columns_frame(self) -> "pd.DataFrame":
        """One row per changed shared column: ``rows`` changed, ``examples``, ``old_dtype``, ``new_dtype``."""
        import pandas as pd

        names = list(dict.fromkeys([*self.column_changes, *self.dtype_changes]))
        return pd.DataFrame({
            "rows": [self.column_changes[c].rows if c in self.column_changes else 0 for c in names],
            "examples": [self.column_changes[c].examples if c in self.column_changes else [] for c in names],
            "old_dtype": [self.dtype_changes.get(c, (None, None))[0] for c in names],
            "new_dtype": [self.dtype_changes.get(c, (None, None))[1] for c in names],
        }, index=pd.Index(names, name="column"))

    def to_dict(self, *, max_ids: int | None = None) -> dict[str, Any]:
        """JSON-ready summary; ``max_ids`` bounds each id list (None: all ids)."""

        def ids(values: np.ndarray) -> list[Any]:
            return values[:max_ids].tolist() if max_ids is not None else values.tolist()

        return {
            "table": self.name,
            "path": self.path,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "id_column": self.id_column,
            "old_rows": self.old_rows,
            "new_rows": self.new_rows,
            "rows_added": len(self.added),
            "rows_removed": len(self.removed),
            "rows_changed": len(self.changed),
            "added": ids(self.added),
            "removed": ids(self.removed),
            "changed": ids(self.changed),
            "columns_added": list(self.columns_added),
            "columns_removed": list(self.columns_removed),
            "dtype_changes": {c: {"old": a, "new": b} for c, (a, b) in self.dtype_changes.items()},
            "column_changes": [c.to_dict() for c in self.column_changes.values()],
            "duplicate_ids": list(self.duplicate_ids),
        }

    def summary_lines(self) -> list[str]:
        """A short plain-text summary, one fact per line (no indentation)."""
        if not self:
            return [f"rows: {self.new_rows}, keyed by {self.id_column}; same rows and values (bytes differ)"]
        lines = [f"rows: {self.old_rows} -> {self.new_rows}, keyed by {self.id_column}: "
                 f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed"]
        for label, values in (("added", self.added), ("removed", self.removed)):
            if len(values):
                lines.append(f"{label}: {_some(values)}")
        if self.columns_added:
            lines.append(f"columns added: {', '.join(self.columns_added)}")
        if self.columns_removed:
            lines.append(f"columns removed: {', '.join(self.columns_removed)}")
        for column, (a, b) in self.dtype_changes.items():
            lines.append(f"dtype of {column}: {a} -> {b}")
        for change in self.column_changes.values():
            examples = "; ".join(f"{_fmt(i)}: {_fmt(o)} -> {_fmt(n)}" for i, o, n in change.examples)
            lines.append(f"{change.column}: {change.rows} rows changed (e.g. {examples})")
        if self.duplicate_ids:
            lines.append(f"duplicate ids (first row compared): {_some(np.asarray(self.duplicate_ids))}")
        return lines

    def __str__(self) -> str:
        head = f"{self.path or self.name}"
        if self.old_version or self.new_version:
            head += f" ({self.old_version} -> {self.new_version})"
        return "\n".join([head + ":", *("  " + line for line in self.summary_lines())])

    def to_markdown(self) -> str:
        """The summary as Markdown bullet points."""
        return "\n".join(f"- {_md(line)}" for line in self.summary_lines()) + "\n"


def _some(values: np.ndarray, n: int = IDS_SHOWN) -> str:
    shown = ", ".join(_fmt(v) for v in values[:n].tolist())
    return shown + (f", … ({len(values)} in all)" if len(values) > n else "")


def _fmt(value: Any) -> str:
    if value is None:
        return "<missing>"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _md(line: str) -> str:
    head, sep, rest = line.partition(": ")
    return f"**{head}**{sep}{rest}" if sep else line


# -- reading ---------------------------------------------------------------------------------


def read_header(path: str | Path) -> list[str]:
    """The column names of a CSV (its first line).

    Raises
    ------
    MetadataTableError
        If the file is empty or has no header.
    """
    with open(path, newline="") as handle:
        row = next(csv.reader(handle), None)
    if not row:
        raise MetadataTableError(f"{path} is empty: no header line, so it cannot be diffed as a table")
    return row


def id_column_for(name: str | None, columns: Iterable[str]) -> str:
    """The id column of a table: its known index, else ``id``, else the first ``*_id`` column.

    Raises
    ------
    MetadataTableError
        If no column qualifies.
    """
    columns = list(columns)
    known = KNOWN_ID_COLUMNS.get(name or "")
    if known and known in columns:
        return known
    if "id" in columns:
        return "id"
    for column in columns:
        if column.endswith("_id"):
            return column
    raise MetadataTableError(f"table {name!r} has no id column (known index, 'id' or '*_id'); "
                             f"columns: {', '.join(columns[:8])}; pass id_column=")


def _read_columns(path: str | Path, columns: list[str]) -> "pa.Table":
    """Only ``columns`` of a CSV, streamed in small blocks so memory holds just those columns.

    The streaming reader infers each column's type from its first block; if a
    later block does not fit (a column empty at first, integers that turn
    into floats), the columns are read again by the whole-file reader, which
    infers over every block.
    """
    import pyarrow as pa
    from pyarrow import csv as pacsv

    convert = pacsv.ConvertOptions(include_columns=columns,
                                   strings_can_be_null=True)  # empty text is missing, as read_csv has it
    try:
        with pa.OSFile(str(path)) as source:
            reader = pacsv.open_csv(source, read_options=pacsv.ReadOptions(block_size=STREAM_BLOCK, use_threads=False),
                                    convert_options=convert)
            return reader.read_all()
    except pa.ArrowInvalid:
        pass  # a type inferred from the first block did not fit a later one
    except OSError as exc:
        raise MetadataTableError(f"cannot read {path}: {exc}") from None
    try:
        with pa.OSFile(str(path)) as source:
            return pacsv.read_csv(source, convert_options=convert)
    except (pa.ArrowInvalid, OSError) as exc:
        raise MetadataTableError(f"cannot read columns {columns[:4]} of {path}: {exc}") from None


def pandas_dtype(array: "pa.ChunkedArray") -> str:
    """The dtype :func:`pandas.read_csv` gives a column Arrow parsed as ``array``.

    (Integers with missing values become float64, booleans with missing values
    and text become object; dates are not parsed by ``read_csv``.)
    """
    import pyarrow as pa

    kind = array.type
    if pa.types.is_integer(kind):
        return "float64" if array.null_count else "int64"
    if pa.types.is_floating(kind) or pa.types.is_null(kind):
        return "float64"
    if pa.types.is_boolean(kind):
        return "object" if array.null_count else "bool"
    return "object"


def _changed_mask(a: "pa.ChunkedArray", b: "pa.ChunkedArray") -> np.ndarray:
    """Elementwise "value differs" of two aligned columns (null == null, NaN == NaN)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(a.type) and pa.types.is_null(b.type):
        return np.zeros(len(a), dtype=bool)
    if not a.type.equals(b.type):
        try:
            if pa.types.is_null(a.type):
                a = a.cast(b.type)
            elif pa.types.is_null(b.type):
                b = b.cast(a.type)
            elif (pa.types.is_integer(a.type) or pa.types.is_floating(a.type)) and \
                    (pa.types.is_integer(b.type) or pa.types.is_floating(b.type)):
                a, b = a.cast(pa.float64()), b.cast(pa.float64())
            else:
                a, b = a.cast(pa.string()), b.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            a, b = a.cast(pa.string()), b.cast(pa.string())
    differs = pc.fill_null(pc.not_equal(a, b), False)
    null_a, null_b = pc.is_null(a), pc.is_null(b)
    differs = pc.or_(differs, pc.xor(null_a, null_b))
    if pa.types.is_floating(a.type):
        both_nan = pc.and_(pc.fill_null(pc.is_nan(a), False), pc.fill_null(pc.is_nan(b), False))
        differs = pc.and_(differs, pc.invert(both_nan))
    return np.asarray(differs.to_numpy(zero_copy_only=False), dtype=bool)


def _python(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def diff_tables(old: str | Path, new: str | Path, *, name: str | None = None, id_column: str | None = None,
                memory_budget: int = DEFAULT_MEMORY_BUDGET, old_version: str | None = None,
                new_version: str | None = None, path: str | None = None) -> TableDiff:
    """Compare two versions of a metadata CSV row by row, keyed by an id column.

    Parameters
    ----------
    old, new
        The two CSV files.
    name
        Table name (``units``); picks the known id column. Defaults to the new file's stem.
    id_column
        Match rows by this column instead of the table's default.
    memory_budget
        About how many bytes of column data to hold per file at once; more
        columns are read per pass when it allows.
    old_version, new_version, path
        Labels for the reports.

    Returns
    -------
    TableDiff

    Raises
    ------
    MetadataTableError
        If a file cannot be parsed or the id column is missing from either version.
    """
    name = name or Path(new).stem
    old_columns, new_columns = read_header(old), read_header(new)
    key = id_column or id_column_for(name, new_columns)
    for label, columns, file in (("old", old_columns, old), ("new", new_columns, new)):
        if key not in columns:
            raise MetadataTableError(f"the {label} version of {name} ({file}) has no id column {key!r}")

    old_ids_arrow = _read_columns(old, [key]).column(0)
    new_ids_arrow = _read_columns(new, [key]).column(0)
    old_ids = _ids(old_ids_arrow)
    new_ids = _ids(new_ids_arrow)
    old_first, old_dups = _first_positions(old_ids)
    new_first, new_dups = _first_positions(new_ids)
    common, old_pos, new_pos = np.intersect1d(old_ids[old_first], new_ids[new_first], assume_unique=True,
                                              return_indices=True)
    old_take, new_take = old_first[old_pos], new_first[new_pos]  # rows of each file, in id order
    added = np.setdiff1d(new_ids[new_first], common, assume_unique=True)
    removed = np.setdiff1d(old_ids[old_first], common, assume_unique=True)

    shared = [c for c in new_columns if c in set(old_columns) and c != key]
    rows = max(len(old_ids), len(new_ids), 1)
    per_pass = max(1, int(memory_budget // (rows * 8)))  # ~8 bytes a value
    any_changed = np.zeros(len(common), dtype=bool)
    column_changes: dict[str, ColumnChange] = {}
    by_column: dict[str, np.ndarray] = {}
    dtype_changes: dict[str, tuple[str, str]] = {}
    import pyarrow as pa

    old_idx, new_idx = pa.array(old_take), pa.array(new_take)
    for start in range(0, len(shared), per_pass):
        group = shared[start:start + per_pass]
        a_table, b_table = _read_columns(old, group), _read_columns(new, group)
        a_columns = dict(zip(a_table.column_names, a_table.columns))
        b_columns = dict(zip(b_table.column_names, b_table.columns))
        del a_table, b_table  # each column is freed as soon as it has been compared
        for column in group:
            a_full, b_full = a_columns.pop(column), b_columns.pop(column)
            a_dtype, b_dtype = pandas_dtype(a_full), pandas_dtype(b_full)
            if a_dtype != b_dtype:
                dtype_changes[column] = (a_dtype, b_dtype)
            a, b = a_full.take(old_idx), b_full.take(new_idx)
            mask = _changed_mask(a, b)
            if not mask.any():
                continue
            positions = np.flatnonzero(mask)
            any_changed |= mask
            by_column[column] = common[positions]
            sample = positions[:EXAMPLES_PER_COLUMN]
            examples = [(_python(common[p]), _python(a[int(p)].as_py()), _python(b[int(p)].as_py())) for p in sample]
            column_changes[column] = ColumnChange(column, int(len(positions)), examples)
    order = {c: i for i, c in enumerate(new_columns)}
    column_changes = dict(sorted(column_changes.items(), key=lambda kv: order[kv[0]]))
    dtype_changes = dict(sorted(dtype_changes.items(), key=lambda kv: order[kv[0]]))
    return TableDiff(
        name=name, id_column=key, old_rows=len(old_ids), new_rows=len(new_ids), added=added, removed=removed,
        changed=common[any_changed], columns_added=[c for c in new_columns if c not in set(old_columns)],
        columns_removed=[c for c in old_columns if c not in set(new_columns)], dtype_changes=dtype_changes,
        column_changes=column_changes, duplicate_ids=sorted({*old_dups.tolist(), *new_dups.tolist()}),
        old_version=old_version, new_version=new_version, path=path, _changed_by_column=by_column)


def _ids(array: "pa.ChunkedArray") -> np.ndarray:
    """Ids as a sortable numpy array (integers stay integers; anything else becomes text)."""
    import pyarrow as pa

    if pa.types.is_integer(array.type) and not array.null_count:
        return array.to_numpy()
    return np.asarray(array.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object).astype(str)


def _first_positions(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of each id's first row (in row order) and the ids seen more than once."""
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    return np.sort(first), ids[first[counts > 1]]


__all__ = ["ColumnChange", "DEFAULT_MEMORY_BUDGET", "KNOWN_ID_COLUMNS", "TableDiff", "diff_tables", "id_column_for",
           "pandas_dtype", "read_header"]
