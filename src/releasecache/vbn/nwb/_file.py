"""A lazily opened, read-only NWB file and helpers that read table columns on demand."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable, TypeVar, Union

import numpy as np
import pandas as pd

from ...errors import NwbLayoutError, ReleaseCacheError, SessionClosedError

logger = logging.getLogger("releasecache")


T = TypeVar("T")

Source = Union[Path, str, BinaryIO]
"""A local path, or a seekable binary file object (e.g. a streamed remote file)."""


_TYPE_MAPS: dict[tuple[tuple[str, tuple[str, ...]], ...], Any] = {}
_TYPE_MAPS_LOCK = threading.Lock()


def _cached_namespaces(h5: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``((namespace, (versions...)), ...)`` of the schemas a file embeds."""
    ref = h5.attrs.get(".specloc")
    if ref is None:
        return ()
    specs = h5[ref]
    return tuple(sorted((name, tuple(sorted(specs[name]))) for name in specs))


def _our_error(exc: BaseException) -> ReleaseCacheError | None:
    """The package's error behind ``exc`` (h5py may wrap what a file object raised), if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ReleaseCacheError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _type_map_for(h5: Any) -> Any:
    """pynwb's type map with the file's embedded namespaces loaded, shared per namespace set.

    Loading the embedded schemas (and generating the extension classes) costs
    about a second per file; files of one release embed the same ones, so a
    session and its probe files load them once per process.
    """
    from pynwb import NWBHDF5IO, get_type_map  # noqa: PLC0415 - slow to import; only on first read

    key = _cached_namespaces(h5)
    with _TYPE_MAPS_LOCK:
        types = _TYPE_MAPS.get(key)
        if types is None:
            types = get_type_map()
            if key:
                NWBHDF5IO.load_namespaces(types, file=h5)
            _TYPE_MAPS[key] = types
    return types


def prepare_reader() -> None:
    """Import the HDF5 reader now (h5py: tens of ms), e.g. while waiting for a stream's first bytes."""
    import h5py  # noqa: F401, PLC0415 - the point is the import itself


class NwbHandle:
    """One NWB file, opened read-only on first use and closed by :meth:`close`.

    Parameters
    ----------
    source
        Local path of the file (it must exist), or a seekable binary file
        object such as a streamed remote file. The file is opened only when
        some data is first asked for. A file object stays the caller's to
        close; :meth:`close` closes only what this handle opened on it.
    """

    def __init__(self, source: Source) -> None:
        self._fileobj: BinaryIO | None = None
        if isinstance(source, (str, Path)):
            self.path = Path(source)
            if not self.path.is_file():
                raise FileNotFoundError(f"NWB file not found: {self.path}")
        else:
            self._fileobj = source
            self.path = Path(str(getattr(source, "name", "<stream>")))
        self._io: Any = None
        self._h5: Any = None
        self._nwbfile: Any = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def is_open(self) -> bool:
        """Whether the HDF5 file is currently open."""
        return self._h5 is not None

    @property
    def nwbfile(self) -> Any:
        """The :class:`pynwb.NWBFile` (opens and reads the file structure once)."""
        if self._closed:
            raise SessionClosedError(f"{self.path.name} was closed; open the session again")
        if self._nwbfile is None:
            self._open()
        return self._nwbfile

    @property
    def h5(self) -> Any:
        """The ``h5py.File``, opened on first use without building any pynwb object."""
        if self._closed:
            raise SessionClosedError(f"{self.path.name} was closed; open the session again")
        if self._h5 is None:
            self._open_h5()
        return self._h5

    def read_direct(self, read: Callable[[Any], T], fallback: Callable[[Any], T]) -> T:
        """``read(h5py file)``, or ``fallback(nwbfile)`` through pynwb when ``read`` cannot.

        The direct readers know the release's layout and read its datasets
        with h5py; for anything else they do not read exactly as pynwb would
        (a missing part, a file that is not NWB, an unusual column) they give
        way to the pynwb reader, which then decides (and names the problem).
        A failed streamed read (network, wrong version) is raised as it is.
        """
        try:
            h5 = self.h5
            if h5.attrs.get("neurodata_type") in ("NWBFile", b"NWBFile"):
                return read(h5)
            reason: str = "the root is not an NWBFile"
        except (ReleaseCacheError, SessionClosedError):
            raise
        except Exception as exc:  # h5py's own errors: let pynwb read (and judge) the file
            ours = _our_error(exc)
            if ours is not None:
                raise ours from None
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        logger.debug("%s: reading through pynwb (%s)", self.path.name, reason)
        return fallback(self.nwbfile)

    def _open_h5(self) -> None:
        import h5py  # noqa: PLC0415 - slow to import: only when a file is first read

        try:
            self._h5 = h5py.File(self._fileobj if self._fileobj is not None else str(self.path), "r")
        except Exception as exc:  # h5py has its own ways to say "not HDF5"
            self._h5 = None
            ours = _our_error(exc)
            if ours is not None:  # a streamed read that failed (network, wrong version): say that, not "not NWB"
                raise ours from None
            raise NwbLayoutError(f"{self.path.name} is not a readable NWB file: {type(exc).__name__}: "
                                 f"{str(exc)[:300]}") from exc

    def _open(self) -> None:
        # hdmf/pynwb are slow to import: only when a file is first read through them
        from hdmf.build import BuildManager  # noqa: PLC0415
        from pynwb import NWBHDF5IO  # noqa: PLC0415

        io = None
        try:
            if self._h5 is None:
                self._open_h5()
            manager = BuildManager(_type_map_for(self._h5))
            io = NWBHDF5IO(file=self._h5, mode="r", manager=manager, load_namespaces=False)
            self._nwbfile = io.read()
        except NwbLayoutError:
            self._close_h5()
            raise
        except Exception as exc:  # h5py, hdmf and pynwb each have their own ways to say "not NWB"
            if io is not None:
                try:
                    io.close()
                except Exception:  # a half-open reader must not mask why
                    pass
            self._close_h5()
            ours = _our_error(exc)
            if ours is not None:  # a streamed read that failed (network, wrong version): say that, not "not NWB"
                raise ours from None
            raise NwbLayoutError(f"{self.path.name} is not a readable NWB file: {type(exc).__name__}: "
                                 f"{str(exc)[:300]}") from exc
        self._io = io
        logger.debug("opened %s", self.path)

    def _close_h5(self) -> None:
        if self._h5 is not None:
            try:
                self._h5.close()
            except (OSError, ValueError):  # already closed with the reader
                pass
        self._h5 = None

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._io is not None:
            self._io.close()
            logger.debug("closed %s", self.path)
        self._close_h5()
        self._io = None
        self._nwbfile = None
        self._closed = True


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S" or (values.dtype == object and values.size
                                    and isinstance(values.flat[0], bytes)):
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
    return values


def read_dataset(data: Any) -> np.ndarray:
    """Read a whole (small) dataset or in-memory array into numpy, decoding strings."""
    values = np.asarray(data[()] if hasattr(data, "shape") and data.shape == () else data[:])
    return _decode(values)


def is_ragged(column: Any) -> bool:
    """Whether a table column is a ragged (indexed) column."""
    from hdmf.common import VectorIndex  # noqa: PLC0415

    return isinstance(column, VectorIndex)


def is_region(column: Any) -> bool:
    """Whether a table column references rows of another table."""
    from hdmf.common import DynamicTableRegion  # noqa: PLC0415

    return isinstance(column, DynamicTableRegion)


def ragged_parts(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """All values of a ragged column and the end offset of each row."""
    ends = np.asarray(column.data[:], dtype=np.int64)
    return read_dataset(column.target.data), ends


def split_ragged(values: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
    """Split flat ragged values at the row end offsets."""
    return np.split(values, ends[:-1]) if len(ends) else []


def table_ids(table: Any) -> np.ndarray:
    """The ``id`` column of a DynamicTable."""
    return np.asarray(table.id.data[:])


def column_names(table: Any) -> list[str]:
    """Names of a table's columns, in stored order."""
    return list(table.colnames)


def scalar_columns(table: Any, names: list[str] | None = None, *, skip: tuple[str, ...] = (),
                   ragged: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read selected columns of a DynamicTable into a DataFrame indexed by ``id``.

    Parameters
    ----------
    table
        An hdmf DynamicTable.
    names
        Columns to read (default: all).
    skip
        Columns never read.
    ragged
        Ragged columns to read as one array per row; other ragged columns and
        table references are skipped.

    Returns
    -------
    pandas.DataFrame
        Index ``id``.
    """
    data: dict[str, Any] = {}
    for name in names if names is not None else column_names(table):
        if name in skip or name not in table.colnames:
            continue
        column = table[name]
        if is_region(column):
            continue
        if is_ragged(column):
            if name in ragged:
                data[name] = split_ragged(*ragged_parts(column))
            continue
        values = read_dataset(column.data)
        data[name] = list(values) if values.ndim > 1 else values
    frame = pd.DataFrame(data, index=pd.Index(table_ids(table), name="id"))
    return frame


def get_child(parent: Any, name: str, what: str, path: Path) -> Any:
    """``parent[name]``, or :class:`NwbLayoutError` naming what is missing."""
    try:
        return parent[name]
    except (KeyError, TypeError) as exc:
        raise NwbLayoutError(f"{path.name} has no {what} ({name!r})") from exc


def processing_child(nwbfile: Any, module: str, name: str) -> Any | None:
    """``nwbfile.processing[module][name]`` or None."""
    mod = nwbfile.processing.get(module)
    if mod is None:
        return None
    return mod.data_interfaces.get(name)
