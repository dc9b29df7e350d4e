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

The work is split by job: :mod:`.nwb_walk` reads one file's tree and attributes,
:mod:`.nwb_values` compares two datasets' values, :mod:`.nwb_report` holds the
result types; this module walks both files in step.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..errors import NwbLayoutError
from .nwb_report import EXAMPLES_PER_DATASET, NwbDiff, ObjectChange, ValueChange
from .nwb_values import compare_datasets
from .nwb_walk import attr_changes, open_h5, read_attributes, source_size, walk_tree

#: Bytes of one dataset read at once from each file.
DEFAULT_BLOCK_BYTES = 8 * 1024 * 1024


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
    h5a = open_h5(old)
    try:
        h5b = open_h5(new)
    except BaseException:
        h5a.close()
        raise
    changes: list[ObjectChange] = []
    compared = 0
    try:
        tree_a, tree_b = walk_tree(h5a, prefixes), walk_tree(h5b, prefixes)
        root_attrs = attr_changes(read_attributes(h5a, h5a), read_attributes(h5b, h5b)) if not prefixes else {}
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
                                  attributes=attr_changes(read_attributes(h5a, a), read_attributes(h5b, b)))
            if ea.type == "dataset":
                if a.shape != b.shape:
                    change.shape = (a.shape, b.shape)
                if a.dtype != b.dtype:
                    change.dtype = (str(a.dtype), str(b.dtype))
                if compare_values and change.shape is None and change.dtype is None:
                    compared += 1
                    change.values = compare_datasets(h5a, h5b, a, b, block_bytes)
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
                   size_old=source_size(old), size_new=source_size(new), path=path, old_version=old_version,
                   new_version=new_version, values_compared=compare_values)


__all__ = ["DEFAULT_BLOCK_BYTES", "EXAMPLES_PER_DATASET", "NwbDiff", "ObjectChange", "ValueChange", "diff_nwb"]
