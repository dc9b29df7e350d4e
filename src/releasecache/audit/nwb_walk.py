"""One HDF5 file's tree for :func:`~releasecache.audit.nwb.diff_nwb`: links by path, attributes, their changes."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import NwbLayoutError

if TYPE_CHECKING:
    import h5py


@dataclass
class Entry:
    type: str  # group, dataset, soft link, external link
    target: str | None = None


def walk_tree(h5: "h5py.File", prefixes: tuple[str, ...]) -> dict[str, Entry]:
    """Every link in the file by path: groups and datasets (hard links), soft and external links."""
    import h5py

    out: dict[str, Entry] = {}

    def visit(name: str, link: Any) -> None:
        if prefixes and not any(name == p or name.startswith(p + "/") or p.startswith(name + "/") for p in prefixes):
            return
        if isinstance(link, h5py.SoftLink):
            out[name] = Entry("soft link", link.path.lstrip("/"))
        elif isinstance(link, h5py.ExternalLink):
            out[name] = Entry("external link", f"{link.filename}:{link.path}")
        else:
            obj = h5.get(name)
            out[name] = Entry("group" if isinstance(obj, h5py.Group) else "dataset")

    h5.visititems_links(visit)
    if prefixes:  # keep only what lies under a requested prefix (ancestors were visited to get there)
        out = {n: e for n, e in out.items() if any(n == p or n.startswith(p + "/") for p in prefixes)}
    return out


def _attr_value(h5: "h5py.File", value: Any) -> Any:
    """An attribute's value, with object references replaced by the paths they point to."""
    import h5py

    if isinstance(value, h5py.Reference):
        return ref_name(h5, value)
    if isinstance(value, np.ndarray) and value.dtype == object:
        return np.array([ref_name(h5, v) if isinstance(v, h5py.Reference) else decode_text(v) for v in value.flat],
                        dtype=object).reshape(value.shape)
    return decode_text(value)


def decode_text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def ref_name(h5: "h5py.File", ref: Any) -> str | None:
    if not ref:
        return None
    try:
        return h5[ref].name.lstrip("/")
    except (KeyError, ValueError, TypeError):
        return "<dangling reference>"


def same_value(a: Any, b: Any) -> bool:
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


def read_attributes(h5: "h5py.File", obj: Any) -> dict[str, Any]:
    out = {}
    for name in obj.attrs:
        try:
            out[name] = _attr_value(h5, obj.attrs[name])
        except (OSError, TypeError) as exc:  # a type h5py cannot read: compare its description
            out[name] = f"<unreadable attribute: {exc}>"
    return out


def attr_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    changes: dict[str, tuple[Any, Any]] = {}
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if name not in old or name not in new or not same_value(a, b):
            changes[name] = (a, b)
    return changes


def open_h5(source: Any) -> "h5py.File":
    import h5py

    try:
        if isinstance(source, (str, os.PathLike)):
            return h5py.File(os.fspath(source), "r")
        return h5py.File(source, "r")
    except OSError as exc:
        raise NwbLayoutError(f"{getattr(source, 'name', source)} is not a readable HDF5/NWB file: {exc}") from None


def source_size(source: Any) -> int | None:
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).stat().st_size
        except OSError:
            return None
    return getattr(source, "size", None)


__all__ = ["Entry", "attr_changes", "decode_text", "open_h5", "read_attributes", "ref_name", "same_value",
           "source_size", "walk_tree"]
