"""The facade scientists use: VBN tables and NWB sessions, with AllenSDK's names.

``ProjectCache`` behaves like AllenSDK's ``VisualBehaviorNeuropixelsProjectCache``
(same method names, arguments and table shapes), so a notebook runs after
swapping the import. It is lazier and faster: creating it downloads nothing
big, each metadata CSV is fetched the first time its table is asked for, and
a reload of an unchanged table comes from a columnar sidecar.
"""

from __future__ import annotations

import logging
import operator
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pandas as pd

from ..cache import CloudCache
from ..config import DEFAULT_BUCKET, DEFAULT_PROJECT
from ..errors import InvalidArgumentError, ManifestVersionError, UnknownSessionError
from ..manifest import Manifest, ManifestDiff, parse_semver
from ..transfer import TransferConfig
from .tables import filter_abnormal_sessions, independent_copy, load_table

if TYPE_CHECKING:
    from ..cache.prefetch import PrefetchReport
    from .nwb import BehaviorSession, EcephysSession

log = logging.getLogger("releasecache")

BUCKET_NAME = DEFAULT_BUCKET
PROJECT_NAME = DEFAULT_PROJECT
#: Manifest versions this reader understands, [min, max), as the real reader states them.
MANIFEST_COMPATIBILITY = ("0.1.0", "10.0.0")
NO_FILE = -999

_TABLE_FILES = {
    "ecephys_sessions": "ecephys_sessions",
    "behavior_sessions": "behavior_sessions",
    "probes": "probes",
    "channels": "channels",
    "units": "units",
}


def _cache_dir(value: Any) -> str:
    """``cache_dir`` as a string with ``~`` expanded, or an error that names the argument."""
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidArgumentError(f"cache_dir must be a path (str or os.PathLike), got {type(value).__name__} "
                                   f"{value!r}")
    return os.path.expanduser(os.fspath(value))


def _row_id(value: Any, what: str) -> int:
    """A session or probe id as an int: ints, numpy integers, strings of digits and whole floats are accepted."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise UnknownSessionError(f"{what} must be an integer, got {value!r} ({type(value).__name__})") from None


class ProjectCache:
    """The Visual Behavior Neuropixels release (or any release shaped like it).

    Build one with :meth:`from_s3`, :meth:`from_http`, :meth:`from_mirror` or
    :meth:`from_local_cache`; they load the manifest used last in the cache
    directory (or the latest) and download nothing else.

    Parameters
    ----------
    cache
        The :class:`~releasecache.cache.CloudCache` underneath.
    skip_version_check
        Open manifests outside :data:`MANIFEST_COMPATIBILITY` anyway.
    """

    #: AllenSDK's class attributes: the public bucket, the project, the manifest versions understood.
    BUCKET_NAME = BUCKET_NAME
    PROJECT_NAME = PROJECT_NAME
    MANIFEST_COMPATIBILITY = MANIFEST_COMPATIBILITY

    def __init__(self, cache: CloudCache, *, skip_version_check: bool = False) -> None:
        self.cache = cache
        cache.ui_name = type(self).__name__  # warnings name the class the user calls
        self.skip_version_check = skip_version_check
        self._tables: dict[tuple[str, str], pd.DataFrame] = {}
        # Every manifest loaded through this facade is checked once, on the copy that is loaded.
        cache.check_manifest = self._check_version
        if cache.current_manifest() is None:
            cache.load_last_manifest()

    # -- constructors ------------------------------------------------------------

    @classmethod
    def from_s3(
        cls,
        cache_dir: str | os.PathLike[str],
        bucket: str = BUCKET_NAME,
        project: str = PROJECT_NAME,
        *,
        endpoint_url: str | None = None,
        anonymous: bool = True,
        transfer_config: TransferConfig | None = None,
        progress: bool = True,
        skip_version_check: bool = False,
        **kwargs: Any,
    ) -> "ProjectCache":
        """A cache fed from S3: the public VBN bucket, anonymously, by default.

        ``bucket``, ``project`` and ``endpoint_url`` point it at any release
        published the same way (a mirror bucket, MinIO, a local test server).
        """
        kwargs.setdefault("ui_name", cls.__name__)
        cache = CloudCache.from_s3(_cache_dir(cache_dir), bucket, project, endpoint_url=endpoint_url,
                                   anonymous=anonymous, transfer_config=transfer_config, progress=progress,
                                   **kwargs)
        return cls(cache, skip_version_check=skip_version_check)

    @classmethod
    def from_s3_cache(cls, cache_dir: str | os.PathLike[str], **kwargs: Any) -> "ProjectCache":
        """AllenSDK's name for :meth:`from_s3`, so existing notebooks run unchanged."""
        return cls.from_s3(cache_dir, **kwargs)

    @classmethod
    def from_http(cls, cache_dir: str | os.PathLike[str], base_url: str, project: str = PROJECT_NAME,
                  **kwargs: Any) -> "ProjectCache":
        """A cache fed over plain HTTP(S) (a public bucket URL or a web mirror)."""
        skip = kwargs.pop("skip_version_check", False)
        kwargs.setdefault("ui_name", cls.__name__)
        return cls(CloudCache.from_http(_cache_dir(cache_dir), base_url, project, **kwargs),
                   skip_version_check=skip)

    @classmethod
    def from_mirror(cls, cache_dir: str | os.PathLike[str], mirror_dir: str | os.PathLike[str],
                    project: str = PROJECT_NAME, **kwargs: Any) -> "ProjectCache":
        """A cache fed from a mounted or synced copy of the bucket."""
        skip = kwargs.pop("skip_version_check", False)
        kwargs.setdefault("ui_name", cls.__name__)
        return cls(CloudCache.from_mirror(_cache_dir(cache_dir), mirror_dir, project, **kwargs),
                   skip_version_check=skip)

    @classmethod
    def from_local_cache(cls, cache_dir: str | os.PathLike[str], project: str = PROJECT_NAME,
                         **kwargs: Any) -> "ProjectCache":
        """An offline cache: no network; serves what ``cache_dir`` already holds."""
        skip = kwargs.pop("skip_version_check", False)
        kwargs.pop("use_static_cache", None)  # AllenSDK's option; the layout here is always the same
        kwargs.setdefault("ui_name", cls.__name__)
        return cls(CloudCache.from_local_cache(_cache_dir(cache_dir), project, **kwargs),
                   skip_version_check=skip)

    def __repr__(self) -> str:
        return f"<ProjectCache {self.cache.cache_dir} {self.cache.current_manifest()}>"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tables"] = {}  # tables reload fast from their sidecars on the other side
        return state

    # -- manifests (AllenSDK names) ----------------------------------------------------

    def _check_version(self, manifest: Manifest) -> None:
        if self.skip_version_check:
            return
        low, high = (parse_semver(v) for v in MANIFEST_COMPATIBILITY)
        if not (low <= manifest.semver < high):
            raise ManifestVersionError(
                f"manifest {manifest.name} has version {manifest.version}, outside the range this reader "
                f"understands [{MANIFEST_COMPATIBILITY[0]}, {MANIFEST_COMPATIBILITY[1]}); "
                "pass skip_version_check=True to open it anyway"
            )

    def list_manifest_file_names(self) -> list[str]:
        """All manifest names, oldest to newest."""
        return self.cache.list_manifest_file_names()

    def latest_manifest_file(self) -> str:
        """The newest manifest's name."""
        return self.cache.latest_manifest_file()

    def latest_downloaded_manifest_file(self) -> str:
        """The newest manifest already downloaded, or ``''``."""
        return self.cache.latest_downloaded_manifest_file()

    def list_all_downloaded_manifests(self) -> list[str]:
        """Names of the manifests already downloaded."""
        return self.cache.list_all_downloaded_manifests()

    def current_manifest(self) -> str | None:
        """The loaded manifest's name."""
        return self.cache.current_manifest()

    def load_manifest(self, manifest_name: str) -> None:
        """Switch to another manifest (a name, or a version such as ``"0.4.0"``); tables are re-read for it."""
        name = self.cache.resolve_manifest_name(manifest_name)
        self.cache.load_manifest(name)  # checked by _check_version before it becomes current

    def load_latest_manifest(self) -> None:
        """Switch to the newest manifest (warning if that moves past the newest one used here before)."""
        self.cache.load_latest_manifest()  # checked by _check_version before it becomes current

    def compare_manifests(self, manifest_0_name: str, manifest_1_name: str) -> ManifestDiff:
        """What changed between two manifests (names or versions): AllenSDK's report text, as a ``str``."""
        return self.cache.compare_manifests(manifest_0_name, manifest_1_name)

    def construct_local_manifest(self, **kwargs: Any) -> Any:
        """Re-index the cache directory (see :meth:`releasecache.cache.CloudCache.construct_local_manifest`)."""
        return self.cache.construct_local_manifest(**kwargs)

    @property
    def manifest(self) -> Manifest:
        """The loaded manifest."""
        return self.cache.manifest

    # -- tables ------------------------------------------------------------------------

    def _table(self, name: str) -> pd.DataFrame:
        """A metadata table of the current version (cached in memory; callers get a copy)."""
        entry = self.cache.metadata_entry(_TABLE_FILES[name])
        key = (name, entry.file_hash)
        frame = self._tables.get(key)
        if frame is None:
            path = self.cache.ensure(entry)
            sidecar_dir = None if self.cache.store.read_only else self.cache.cache_dir / ".tables"
            frame = load_table(name, path, content_hash=entry.file_hash, sidecar_dir=sidecar_dir)
            self._tables = {k: v for k, v in self._tables.items() if k[0] != name}
            self._tables[key] = frame
        return frame

    def get_ecephys_session_table(self, filter_abnormalities: bool = True) -> pd.DataFrame:
        """One row per ecephys session, indexed by ``ecephys_session_id``.

        With ``filter_abnormalities`` (the default), sessions with abnormal
        histology or activity are dropped.
        """
        frame = self._table("ecephys_sessions")
        return filter_abnormal_sessions(frame) if filter_abnormalities else independent_copy(frame)

    def get_behavior_session_table(self) -> pd.DataFrame:
        """One row per behavior session, indexed by ``behavior_session_id``."""
        return independent_copy(self._table("behavior_sessions"))

    def get_probe_table(self) -> pd.DataFrame:
        """One row per probe, indexed by ``ecephys_probe_id``."""
        return independent_copy(self._table("probes"))

    def get_channel_table(self) -> pd.DataFrame:
        """One row per channel, indexed by ``ecephys_channel_id``."""
        return independent_copy(self._table("channels"))

    def get_unit_table(self) -> pd.DataFrame:
        """One row per unit, indexed by ``unit_id``."""
        return independent_copy(self._table("units"))

    # -- file ids ----------------------------------------------------------------------

    def _file_id(self, table: str, row_id: int) -> Any:
        frame = self._table(table)
        if row_id not in frame.index:
            label = frame.index.name or "id"
            sample = ", ".join(str(i) for i in list(frame.index[:5]))
            raise UnknownSessionError(
                f"{label} {row_id} is not in {table}.csv of manifest {self.cache.current_manifest()} "
                f"({len(frame)} rows; e.g. {sample})"
            )
        return frame.loc[row_id, self.cache.file_id_column]

    @staticmethod
    def _has_file(file_id: Any) -> bool:
        return file_id is not None and not pd.isna(file_id) and int(file_id) >= 0

    def _ecephys_file_id(self, ecephys_session_id: int) -> int:
        ecephys_session_id = _row_id(ecephys_session_id, "ecephys_session_id")
        file_id = self._file_id("ecephys_sessions", ecephys_session_id)
        if not self._has_file(file_id):
            raise UnknownSessionError(
                f"ecephys session {ecephys_session_id} has no NWB file in release "
                f"{self.cache.version} (file_id {file_id})"
            )
        return int(file_id)

    def _behavior_file_id(self, behavior_session_id: int) -> int:
        behavior_session_id = _row_id(behavior_session_id, "behavior_session_id")
        file_id = self._file_id("behavior_sessions", behavior_session_id)
        if self._has_file(file_id):
            return int(file_id)
        # The behavior part of a released ecephys session lives in the ecephys NWB.
        ecephys_id = self._table("behavior_sessions").loc[behavior_session_id, "ecephys_session_id"]
        if pd.isna(ecephys_id):
            raise UnknownSessionError(
                f"behavior session {behavior_session_id} has no NWB file in release {self.cache.version}"
            )
        return self._ecephys_file_id(int(ecephys_id))

    def _probe_file_ids(self, ecephys_session_id: int) -> dict[str, tuple[int, float]]:
        """{probe name: (file id, lfp_sampling_rate)} for the session's probes with LFP files."""
        ecephys_session_id = _row_id(ecephys_session_id, "ecephys_session_id")
        probes = self._table("probes")
        if self.cache.file_id_column not in probes.columns:
            return {}
        rows = probes[(probes["ecephys_session_id"] == ecephys_session_id)]
        if "has_lfp_data" in rows.columns:
            rows = rows[rows["has_lfp_data"].astype(bool)]
        out = {}
        for _, row in rows.iterrows():
            fid = row[self.cache.file_id_column]
            if self._has_file(fid):
                out[str(row["name"])] = (int(fid), float(row.get("lfp_sampling_rate", float("nan"))))
        return out

    # -- sessions ----------------------------------------------------------------------

    def _open_session(self, factory: Any, file_id: int, stream: bool,
                      make_kwargs: Callable[[], dict[str, Any]] = dict) -> Any:
        """Build a session over the verified local file, or over a ranged-read stream.

        ``make_kwargs()`` gives the session's other arguments. When streaming, it
        runs (and the HDF5 reader is imported) in a helper thread while the
        stream's first request is on the network.
        """
        if not stream:
            session = factory(self.cache.download_data(file_id), **make_kwargs())
            session.streamed, session.verified = False, True
            return session
        from .nwb import prepare_reader  # noqa: PLC0415 - a start that only reads tables needs no session code
        from .streaming import open_data  # noqa: PLC0415 - nor stream code

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rc-session-args") as pool:
            gathering = pool.submit(lambda: (make_kwargs(), prepare_reader())[0])
            try:
                remote_file = open_data(self.cache, file_id, prefer_local=True)
            except BaseException:
                gathering.cancel()
                raise
            try:
                kwargs = gathering.result()
            except BaseException:
                remote_file.close()
                raise
        session = factory(remote_file, **kwargs)
        close_session = session.close

        def close() -> None:  # the session also owns the stream it was given
            try:
                close_session()
            finally:
                remote_file.close()

        session.close = close
        session.streamed = not self.cache.is_cached(self.cache.data_entry(file_id))
        # Bytes read through a stream are pinned to the version id but never hashed.
        session.verified = not session.streamed
        session.stream = remote_file
        return session

    def get_ecephys_session(self, ecephys_session_id: int, *, stream: bool = False) -> "EcephysSession":
        """The session's NWB as an :class:`~releasecache.vbn.nwb.EcephysSession`.

        Parameters
        ----------
        ecephys_session_id
            An index value of :meth:`get_ecephys_session_table`.
        stream
            Read the NWB with ranged requests at the manifest's pinned version id
            instead of downloading it (the session's ``verified`` is then False:
            streamed bytes are not hash-checked). A cached file is read locally.

        Probe LFP files are downloaded only when ``get_lfp`` or
        ``get_current_source_density`` is called for that probe.
        """
        # imported here: a start that only reads tables needs no session code
        from .nwb import EcephysSession, ProbeMeta

        file_id = self._ecephys_file_id(ecephys_session_id)

        def session_kwargs() -> dict[str, Any]:
            return {"probe_meta": {
                name: ProbeMeta(lfp_csd_filepath=(lambda fid=fid: self.cache.download_data(fid)),
                                lfp_sampling_rate=rate)
                for name, (fid, rate) in self._probe_file_ids(ecephys_session_id).items()
            }}

        return self._open_session(EcephysSession, file_id, stream, session_kwargs)

    def get_behavior_session(self, behavior_session_id: int, *, stream: bool = False) -> "BehaviorSession":
        """A behavior session as a :class:`~releasecache.vbn.nwb.BehaviorSession`.

        A behavior session recorded with an ecephys session reads the ecephys
        NWB, as the released files are organised. ``stream`` as in
        :meth:`get_ecephys_session`.
        """
        # imported here: a start that only reads tables needs no session code
        from .nwb import BehaviorSession

        return self._open_session(BehaviorSession, self._behavior_file_id(behavior_session_id), stream)

    def used_files(self) -> list[dict[str, Any]]:
        """Every file this process opened through the cache (see :meth:`CloudCache.used_files`)."""
        return self.cache.used_files()

    def write_record(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Write the reproducibility lock of :meth:`used_files` (see :meth:`CloudCache.write_record`)."""
        return self.cache.write_record(path)

    # -- files ----------------------------------------------------------------------

    def _session_file_ids(self, ecephys_session_id: int | None = None, behavior_session_id: int | None = None,
                          include_lfp: bool = True) -> list[int]:
        ids: list[int] = []
        if ecephys_session_id is not None:
            ids.append(self._ecephys_file_id(ecephys_session_id))
            if include_lfp:
                ids.extend(fid for fid, _ in self._probe_file_ids(ecephys_session_id).values())
        if behavior_session_id is not None:
            ids.append(self._behavior_file_id(behavior_session_id))
        return list(dict.fromkeys(ids))

    def list_data_files(self, ecephys_session_id: int | None = None,
                        behavior_session_id: int | None = None) -> pd.DataFrame:
        """Data files of the current version, or of one session, and whether each is cached.

        Columns: ``file_id``, ``path`` (in the release), ``file_hash``, ``version_id``, ``cached``.
        """
        if ecephys_session_id is None and behavior_session_id is None:
            entries = list(self.manifest.data_files.values())
        else:
            ids = self._session_file_ids(ecephys_session_id, behavior_session_id)
            entries = [self.cache.data_entry(fid) for fid in ids]
        rows = [{"file_id": int(e.name) if e.name.isdigit() else e.name, "path": e.relative_path,
                 "file_hash": e.file_hash, "version_id": e.version_id, "cached": self.cache.is_cached(e)}
                for e in entries]
        return pd.DataFrame(rows, columns=["file_id", "path", "file_hash", "version_id", "cached"])

    def prefetch(
        self,
        file_ids: Iterable[int] | None = None,
        *,
        ecephys_session_ids: Iterable[int] | None = None,
        behavior_session_ids: Iterable[int] | None = None,
        include_lfp: bool = True,
        **kwargs: Any,
    ) -> "PrefetchReport":
        """Download many files at once (see :meth:`releasecache.cache.CloudCache.prefetch`).

        Give file ids, session ids, or nothing for every file of the current manifest.
        """
        ids: list[int] | None = None
        if file_ids is not None or ecephys_session_ids is not None or behavior_session_ids is not None:
            ids = [_row_id(f, "file id") for f in (file_ids if file_ids is not None else [])]
            for esid in ecephys_session_ids if ecephys_session_ids is not None else []:
                ids += self._session_file_ids(ecephys_session_id=esid, include_lfp=include_lfp)
            for bsid in behavior_session_ids if behavior_session_ids is not None else []:
                ids += self._session_file_ids(behavior_session_id=bsid)
            ids = list(dict.fromkeys(ids))
        return self.cache.prefetch(ids, **kwargs)

    def download_data(self, file_id: int) -> os.PathLike[str]:
        """The local path of a data file (downloaded and verified if needed)."""
        return self.cache.download_data(file_id)
