"""Streaming reads that need a cache: open a file of the loaded manifest without downloading it.

:class:`~releasecache.transfer.stream.RemoteFile` does the ranged reads; this
module picks the entry, records the use, and opens NWB files over it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from ..cache.budget import lease_open_file
from ..cache.record import note_used
from ..errors import OfflineError
from ..manifest import FileEntry
from ..transfer.stream import RemoteFile

if TYPE_CHECKING:
    from ..cache import CloudCache

log = logging.getLogger("releasecache")


def open_entry(cache: "CloudCache", entry: FileEntry, *, prefer_local: bool = False, **options: Any) -> Any:
    """Open one file of the cache's loaded manifest for reading without downloading it.

    Parameters
    ----------
    cache
        A :class:`~releasecache.cache.CloudCache` with a manifest loaded.
    entry
        The manifest entry (``cache.data_entry(file_id)``).
    prefer_local
        If the verified file is already in the cache, open that instead of
        streaming (a regular local file object, ``verified`` in the record).
    options
        Passed to :class:`RemoteFile` (``block_size``, ``max_readahead``, ...).

    Returns
    -------
    RemoteFile or a local binary file
        Use it as a context manager; close it when done.
    """
    if prefer_local and cache.is_cached(entry):
        path = cache.ensure(entry)
        return lease_open_file(open(path, "rb"))  # a size budget does not evict it while it is open
    if cache.remote is None:
        raise OfflineError(f"cannot stream {entry.relative_path}: this cache is offline and the file is not cached")
    options.setdefault("expected_hash", entry.file_hash)  # a file read in order to its end is then verified
    fobj = RemoteFile(cache.remote.ranged_reader(), entry.location, size=entry.size, name=entry.relative_path,
                      **options)
    note_used(cache, entry, streamed=True)
    return fobj


def open_data(cache: "CloudCache", file_id: int | str, **options: Any) -> Any:
    """:func:`open_entry` for a data file id of the loaded manifest."""
    return open_entry(cache, cache.data_entry(file_id), **options)


def open_nwb(file_obj: Any, *, load_namespaces: bool = True) -> Any:
    """Open an NWB (HDF5) file object read-only with h5py and pynwb; return the ``NWBFile``.

    ``file_obj`` is any seekable binary file (a :class:`RemoteFile`, or a local
    file). Keep it open while using the result; close with
    :func:`close_nwb` (or ``nwbfile.read_io.close()`` and then ``file_obj.close()``).
    """
    import h5py
    import pynwb

    h5 = h5py.File(file_obj, "r")
    try:
        nwb_io = pynwb.NWBHDF5IO(file=h5, mode="r", load_namespaces=load_namespaces)
        return nwb_io.read()
    except Exception:
        h5.close()
        raise


def close_nwb(nwbfile: Any) -> None:
    """Close what :func:`open_nwb` opened (the NWB reader and its HDF5 file)."""
    io_ = getattr(nwbfile, "read_io", None)
    if io_ is None:
        return
    h5 = getattr(io_, "_file", None)
    io_.close()
    if h5 is not None:
        try:
            h5.close()
        except Exception:  # already closed
            pass


@contextmanager
def stream_nwb(cache: "CloudCache", file_id: int | str, **options: Any) -> Iterator[tuple[Any, RemoteFile]]:
    """Stream a data file of the loaded manifest as NWB: ``with stream_nwb(cache, 870) as (nwbfile, fobj):``.

    Everything is closed on exit. ``fobj.bytes_read`` tells how much was fetched.
    """
    fobj = open_data(cache, file_id, **options)
    try:
        nwbfile = open_nwb(fobj)
        try:
            yield nwbfile, fobj
        finally:
            close_nwb(nwbfile)
    finally:
        fobj.close()


__all__ = ["RemoteFile", "open_entry", "open_data", "open_nwb", "close_nwb", "stream_nwb"]
