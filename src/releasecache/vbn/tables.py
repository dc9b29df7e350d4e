"""Project-metadata CSVs as typed pandas DataFrames, with a fast columnar sidecar.

Typing follows the reference reader of the Visual Behavior Neuropixels release:

* a plain :func:`pandas.read_csv` (no date parsing: dates stay strings;
  list-valued columns such as ``"['APN', 'CA1']"`` stay strings);
* nullable ``Int64`` for :data:`INTEGER_COLUMNS`, only in the two session
  tables (:data:`NULLABLE_INT_TABLES`);
* one index column per table (:data:`INDEX_COLUMNS`).

Reloading is fast: the typed frame is stored once as an uncompressed Arrow
IPC (Feather v2) file of one record batch, named after the CSV's blake2b
content hash, and an unchanged CSV is read back from it instead of being
parsed again. Under pandas' copy-on-write (always in pandas >= 3) the numeric
columns are views of a private (copy-on-write) memory map of the sidecar:
a reload copies nothing, pages are read when used, and a write to the frame
copies the page it touches, never changing the file. The sidecar is written
atomically (temporary file, fsync, :func:`os.replace`), so a reader never sees
a partial one; an unreadable sidecar is ignored, removed and rebuilt.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import MetadataTableError
from ..utils import file_mode, hash_file

logger = logging.getLogger("releasecache")

INDEX_COLUMNS: dict[str, str] = {
    "ecephys_sessions": "ecephys_session_id",
    "behavior_sessions": "behavior_session_id",
    "probes": "ecephys_probe_id",
    "channels": "ecephys_channel_id",
    "units": "unit_id",
}
"""Index column of each table, keyed by table name (CSV file name without ``.csv``)."""

TABLE_NAMES: tuple[str, ...] = tuple(INDEX_COLUMNS)

INTEGER_COLUMNS: tuple[str, ...] = (
    "prior_exposures_to_image_set",
    "ecephys_session_id",
    "unit_count",
    "probe_count",
    "channel_count",
)
"""Columns made nullable ``Int64`` (when present) in :data:`NULLABLE_INT_TABLES`."""

NULLABLE_INT_TABLES: frozenset[str] = frozenset({"ecephys_sessions", "behavior_sessions"})

ABNORMALITY_COLUMNS: tuple[str, ...] = ("abnormal_histology", "abnormal_activity")

SIDECAR_FORMAT = 2
"""Bump when the typing rules or the layout change, so old sidecars are not reused (2: one record batch)."""

_OBJECT_TEXT = int(pd.__version__.split(".", 1)[0]) < 3
"""pandas < 3 keeps text as Python objects; pandas >= 3 has an Arrow-backed string dtype."""

_HEX = re.compile(r"[0-9a-f]{16,128}")


def file_content_hash(path: Path) -> str:
    """The blake2b (64-byte digest) hex hash of a file, as listed in release manifests.

    Parameters
    ----------
    path
        File to hash.

    Returns
    -------
    str
        128 lowercase hex characters.
    """
    return hash_file(path)


def _check_name(name: str) -> str:
    if name not in INDEX_COLUMNS:
        raise MetadataTableError(
            f"unknown metadata table {name!r}; expected one of {', '.join(TABLE_NAMES)}"
        )
    return INDEX_COLUMNS[name]


def read_table_csv(name: str, csv_path: Path) -> pd.DataFrame:
    """Parse a metadata CSV and apply the table's typing and index.

    Parameters
    ----------
    name
        Table name, one of :data:`TABLE_NAMES`.
    csv_path
        The CSV file.

    Returns
    -------
    pandas.DataFrame
        The typed table, indexed by the table's id column.

    Raises
    ------
    MetadataTableError
        If ``name`` is unknown, the file is not a CSV (binary, truncated inside
        a quote, empty), an integer column holds other values, or the CSV lacks
        the index column.
    """
    index = _check_name(name)
    try:
        frame = pd.read_csv(csv_path)
    except ValueError as exc:  # ParserError, EmptyDataError, UnicodeDecodeError: not a CSV at all
        raise MetadataTableError(f"{csv_path} cannot be read as the {name} table: {type(exc).__name__}: "
                                 f"{str(exc)[:300]}") from None
    if name in NULLABLE_INT_TABLES:
        for column in INTEGER_COLUMNS:
            if column in frame.columns:
                try:
                    frame[column] = frame[column].astype("Int64")
                except (TypeError, ValueError, OverflowError) as exc:  # text, fractions, huge numbers
                    raise MetadataTableError(
                        f"{csv_path}: column {column!r} of the {name} table holds values that are not integers "
                        f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if index not in frame.columns:
        raise MetadataTableError(
            f"{csv_path} has no {index!r} column, so it cannot be the {name} table "
            f"(columns: {', '.join(map(str, frame.columns[:8]))}...)"
        )
    return frame.set_index(index)


def sidecar_path(sidecar_dir: Path, name: str, content_hash: str) -> Path:
    """Where the sidecar of a table with this CSV content lives.

    The name carries the content hash, the table name, the sidecar format and
    the pandas major version (string dtypes differ between pandas 2 and 3).

    Raises
    ------
    MetadataTableError
        If ``content_hash`` is not a lowercase hex digest.
    """
    _check_name(name)
    if not _HEX.fullmatch(content_hash):
        raise MetadataTableError(
            f"content hash {content_hash[:40]!r} of the {name} table is not a hex digest; "
            "pass the manifest's file_hash or None to hash the CSV"
        )
    pandas_major = pd.__version__.split(".", 1)[0]
    return Path(sidecar_dir) / f"{content_hash}.{name}.v{SIDECAR_FORMAT}-pd{pandas_major}.arrow"


def copy_on_write() -> bool:
    """True if pandas copies a column before writing to it (pandas >= 3, or the option set in pandas 2).

    Only then may frames share columns (a zero-copy sidecar read, a shallow copy for a caller).
    """
    return not _OBJECT_TEXT or getattr(pd.options.mode, "copy_on_write", False) is True


def independent_copy(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` that the caller may change without changing ``frame``.

    Under copy-on-write a shallow copy is one (data is copied when either side
    writes), with its own index and columns objects so that renaming them stays
    local too; otherwise, a deep copy.
    """
    if not copy_on_write():
        return frame.copy()
    out = frame.copy(deep=False)
    out.index = frame.index.copy()
    out.columns = frame.columns.copy()
    return out


def _map_private(path: Path) -> mmap.mmap:
    """The file mapped copy-on-write: readable in place, and writable without touching the file."""
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)


def _read_sidecar(path: Path, name: str) -> pd.DataFrame | None:
    import pyarrow as pa  # noqa: PLC0415 - pyarrow is only needed with a sidecar
    from pyarrow import feather, ipc  # noqa: PLC0415

    try:
        # Uncompressed, one record batch, memory-mapped: nothing is parsed, and
        # under copy-on-write nothing is copied either (see _writable_views).
        if copy_on_write():
            mapping = _map_private(path)
            frame = _from_arrow(ipc.open_file(pa.BufferReader(pa.py_buffer(mapping))).read_all(), name, mapping)
        else:
            frame = _from_arrow(feather.read_table(str(path), memory_map=True), name)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring unreadable table sidecar %s (%s); rebuilding it from the CSV",
                       path, exc)
        _remove_quietly(path)
        return None
    if frame is None:
        logger.warning("ignoring table sidecar %s: no %r column; rebuilding it",
                       path, INDEX_COLUMNS[name])
        _remove_quietly(path)
    return frame


def _to_arrow(frame: pd.DataFrame) -> Any:
    """The typed frame as an Arrow table, its index as a plain first column.

    (Arrow keeps an Int64 column's dtype in the pandas metadata, but not an
    Int64 index's.) Where pandas keeps text as Python objects (pandas < 3),
    text columns are stored dictionary-encoded: decoding them is then a
    ``take`` from the few distinct values instead of one new object per row.
    """
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    table = pa.Table.from_pandas(frame.reset_index(), preserve_index=False)
    if _OBJECT_TEXT:
        for i, field in enumerate(table.schema):
            if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
                table = table.set_column(i, field.name, pc.dictionary_encode(table.column(i)))
    return table


def _from_arrow(table: Any, name: str, mapping: mmap.mmap | None = None) -> pd.DataFrame | None:
    """Inverse of :func:`_to_arrow` (None if the index column is missing).

    The index is attached directly rather than with ``set_index``, which
    copies every column under pandas < 3. Missing text is NaN, as
    ``read_csv`` spells it. With the private ``mapping`` the table was read
    from, columns are views of it instead of copies.
    """
    import pyarrow as pa  # noqa: PLC0415

    index_name = INDEX_COLUMNS[name]
    if index_name not in table.column_names:
        return None
    index = table.column(index_name).to_pandas()
    if name in NULLABLE_INT_TABLES and index_name in INTEGER_COLUMNS:
        index = index.astype("Int64")
    table = table.drop_columns([index_name])
    # split_blocks: one block per column, zero-copy where Arrow's layout is numpy's
    frame = table.to_pandas(split_blocks=mapping is not None)
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_dictionary(field.type):
            frame[field.name] = _decode_dictionary(column)
        elif column.null_count and frame[field.name].dtype == object:
            values = frame[field.name].to_numpy(dtype=object, copy=True)
            values[pd.isna(values)] = np.nan
            frame[field.name] = values
    if mapping is not None:
        frame = _writable_views(frame, mapping)
    frame.index = pd.Index(index, name=index_name)
    return frame


def _writable_views(frame: pd.DataFrame, mapping: mmap.mmap) -> pd.DataFrame:
    """``frame`` with its zero-copy numpy columns as writable views of the same bytes of ``mapping``.

    Arrow marks the arrays it lends read-only, so a frame that owned them alone
    could not be written to at all (copy-on-write copies only what another
    object shares). The mapping is private (``ACCESS_COPY``): a write copies
    the page it touches and never reaches the sidecar. Columns that were
    converted (booleans, columns with nulls, text) are kept as they are.
    """
    whole = np.frombuffer(mapping, dtype=np.uint8)
    start, end = whole.ctypes.data, whole.ctypes.data + len(whole)
    columns: dict[Any, Any] = {}
    for label in frame.columns:
        series = frame[label]
        values = series.to_numpy() if isinstance(series.dtype, np.dtype) else None
        if (values is not None and values.ndim == 1 and values.strides == (values.itemsize,)
                and start <= values.ctypes.data and values.ctypes.data + values.nbytes <= end):
            columns[label] = np.frombuffer(mapping, dtype=values.dtype, count=len(values),
                                           offset=values.ctypes.data - start)
        else:
            columns[label] = series
    out = pd.DataFrame(columns, copy=False)
    out.columns.name = frame.columns.name
    return out


def _decode_dictionary(column: Any) -> np.ndarray:
    import pyarrow.compute as pc  # noqa: PLC0415

    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    labels = np.empty(len(array.dictionary) + 1, dtype=object)
    labels[:-1] = array.dictionary.to_pylist()
    labels[-1] = np.nan
    codes = pc.fill_null(array.indices, -1).to_numpy(zero_copy_only=False).astype(np.intp)
    codes[codes < 0] = len(labels) - 1
    return labels.take(codes)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _remove_older_formats(path: Path) -> None:
    """Remove the sidecars of the same table written in an older format (they are never read again)."""
    for version in range(1, SIDECAR_FORMAT):
        old = path.with_name(path.name.replace(f".v{SIDECAR_FORMAT}-", f".v{version}-"))
        if old != path:
            _remove_quietly(old)


def _write_sidecar(frame: pd.DataFrame, path: Path) -> None:
    """Write the sidecar atomically; failures are logged, never raised."""
    import pyarrow as pa  # noqa: PLC0415
    from pyarrow import feather  # noqa: PLC0415

    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = _to_arrow(frame)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                         delete=False) as handle:
            tmp_name = handle.name
            os.fchmod(handle.fileno(), file_mode())  # at once: a sidecar left by a kill must not be 0600
            # One record batch: several would make every column a chunked array, which
            # to_pandas() must concatenate (a copy) instead of viewing in place.
            feather.write_feather(table.combine_chunks(), handle, compression="uncompressed",
                                  chunksize=max(table.num_rows, 1))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        _remove_older_formats(path)
    except (OSError, pa.ArrowException, ValueError, TypeError) as exc:
        logger.warning("could not write table sidecar %s (%s); tables will be parsed from CSV",
                       path, exc)
    finally:
        if tmp_name is not None:
            _remove_quietly(Path(tmp_name))


def load_table(name: str, csv_path: Path, *, content_hash: str | None = None,
               sidecar_dir: Path | None = None) -> pd.DataFrame:
    """Load a metadata table, from its sidecar when the CSV is unchanged.

    Parameters
    ----------
    name
        Table name, one of :data:`TABLE_NAMES` (the CSV name without ``.csv``).
    csv_path
        The CSV file.
    content_hash
        blake2b hex digest of the CSV (e.g. the manifest's ``file_hash``). When
        None and a sidecar directory is given, the CSV is hashed here.
    sidecar_dir
        Directory for sidecars; None disables them (always parse the CSV).

    Returns
    -------
    pandas.DataFrame
        A new, independent frame on every call (safe to mutate).

    Raises
    ------
    MetadataTableError
        Unknown table name, missing index column, or a malformed hash.
    """
    _check_name(name)
    csv_path = Path(csv_path)
    if sidecar_dir is None:
        return read_table_csv(name, csv_path)
    if content_hash is None:
        content_hash = file_content_hash(csv_path)
    path = sidecar_path(Path(sidecar_dir), name, content_hash.lower())
    frame = _read_sidecar(path, name)
    if frame is not None:
        logger.debug("loaded %s table from sidecar %s", name, path)
        return frame
    frame = read_table_csv(name, csv_path)
    _write_sidecar(frame, path)
    logger.debug("parsed %s table from %s; sidecar %s", name, csv_path, path)
    return frame


def filter_abnormal_sessions(sessions: pd.DataFrame) -> pd.DataFrame:
    """Drop sessions flagged with abnormal histology or abnormal activity.

    Keeps the rows where both ``abnormal_histology`` and ``abnormal_activity``
    are null (a missing column counts as null).

    Parameters
    ----------
    sessions
        The ecephys session table.

    Returns
    -------
    pandas.DataFrame
        A copy holding the kept rows.
    """
    keep = pd.Series(True, index=sessions.index)
    for column in ABNORMALITY_COLUMNS:
        if column in sessions.columns:
            keep &= sessions[column].isna()
    return sessions.loc[keep.to_numpy()].copy()
