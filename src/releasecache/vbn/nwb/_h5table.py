"""Read NWB tables (DynamicTable groups) straight from HDF5, without building pynwb objects.

Opening a file with pynwb builds a Python object for every group and dataset
in it (a few hundred in a session file) and loads the schemas the file embeds:
about half a CPU-second, and over a stream more requests. A DynamicTable is a
plain HDF5 group: a ``colnames`` attribute, an ``id`` dataset and one dataset
per column, a ragged column ``x`` being the flat values ``x`` plus the row end
offsets ``x_index``. Reading those datasets with h5py gives the same values
pynwb hands out, so the frames built here are the frames
:func:`~releasecache.vbn.nwb._file.scalar_columns` builds over pynwb.

Whatever this reader does not know to read exactly as pynwb would (a doubly
ragged column, object references, a compound column, a group that is not a
table) raises :class:`NotPlainTable`; the caller then reads through pynwb.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._file import read_dataset, split_ragged

INDEX_TYPE = "VectorIndex"
REGION_TYPE = "DynamicTableRegion"


class NotPlainTable(Exception):
    """The table uses something this reader does not read; read it through pynwb instead."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def neurodata_type(obj: Any) -> str | None:
    """The ``neurodata_type`` attribute of an HDF5 object, or None."""
    value = obj.attrs.get("neurodata_type")
    return None if value is None else _text(value)


def child(parent: Any, path: str) -> Any | None:
    """``parent[path]`` if it exists (no error for a missing link), else None."""
    return parent[path] if path in parent else None


def colnames(group: Any) -> list[str]:
    """The table's column names, in stored order."""
    names = group.attrs.get("colnames")
    if names is None or "id" not in group:
        raise NotPlainTable(f"{group.name} is not a DynamicTable (no colnames or id)")
    return [_text(n) for n in np.atleast_1d(names)]


def _plain_dataset(group: Any, name: str) -> Any:
    import h5py  # noqa: PLC0415 - h5py is already loaded: the group is an h5py object

    obj = group.get(name)
    if not isinstance(obj, h5py.Dataset):
        raise NotPlainTable(f"{group.name}/{name} is not a dataset")
    dtype = obj.dtype
    if dtype.names is not None or h5py.check_dtype(ref=dtype) is not None:
        raise NotPlainTable(f"{group.name}/{name} holds compound values or references")
    return obj


def _ragged_ends(group: Any, name: str) -> np.ndarray | None:
    """Row end offsets of a ragged column, None for a column that is not ragged."""
    index_name = f"{name}_index"
    if index_name not in group:
        return None
    if f"{index_name}_index" in group:
        raise NotPlainTable(f"{group.name}/{name} is ragged twice over")
    index = _plain_dataset(group, index_name)
    if neurodata_type(index) != INDEX_TYPE:
        raise NotPlainTable(f"{group.name}/{index_name} is not a VectorIndex")
    return np.asarray(index[:], dtype=np.int64)


def table_columns(group: Any, names: list[str] | None = None, *, skip: tuple[str, ...] = (),
                  ragged: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read selected columns of a DynamicTable group into a DataFrame indexed by ``id``.

    The same contract as :func:`~releasecache.vbn.nwb._file.scalar_columns`:
    ragged columns are read (one array per row) only when named in
    ``ragged``, table references are skipped, ``skip`` is never read.

    Raises
    ------
    NotPlainTable
        The group is not a table this reader reads as pynwb would.
    """
    stored = colnames(group)
    data: dict[str, Any] = {}
    for name in names if names is not None else stored:
        if name in skip or name not in stored:
            continue
        if name not in group:
            raise NotPlainTable(f"{group.name} lists a column {name!r} it does not hold")
        if f"{name}_index" in group:  # ragged: its index is the column pynwb hands out
            if name in ragged:
                ends = _ragged_ends(group, name)
                values = read_dataset(_plain_dataset(group, name))
                data[name] = split_ragged(values, ends)
            continue
        column = _plain_dataset(group, name)
        if neurodata_type(column) == REGION_TYPE:
            continue
        values = read_dataset(column)
        data[name] = list(values) if values.ndim > 1 else values
    ids = np.asarray(_plain_dataset(group, "id")[:])
    return pd.DataFrame(data, index=pd.Index(ids, name="id"))


__all__ = ["NotPlainTable", "child", "colnames", "neurodata_type", "table_columns"]
