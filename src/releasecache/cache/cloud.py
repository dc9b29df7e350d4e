"""The resolver: which manifests exist, which one is loaded, and where its files are.

:class:`CloudCache` is the layer scientists rarely see directly: it lists and
orders manifests, remembers the last one used, warns when it is outdated, maps
file ids and metadata names to manifest entries, and asks the transfer layer for
any file that is not yet in the store.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..config import DEFAULT_LOCK_LEASE, DEFAULT_LOCK_TIMEOUT, DEFAULT_PARTIAL_AGE_DAYS, ENV_USAGE_LOG
from ..errors import ManifestNotFoundError, NoManifestLoadedError, OfflineError, OutdatedManifestWarning
from ..manifest import FileEntry, Manifest, ManifestDiff, check_relative_path, compare_manifests, sort_manifest_names
from ..remote import Remote, make_remote
from ..store import Store
from ..transfer import Transfer, TransferConfig
from . import catalogue, du, gc, prefetch, record, verify
from .fetch import ensure_entry
from .usage import UsageRecorder

if TYPE_CHECKING:
    import pandas as pd
    from .du import DiskUsage
    from .gc import GCReport
    from .prefetch import PrefetchPlan, PrefetchReport
    from .verify import VerifyReport

log = logging.getLogger("releasecache")



class CloudCache:
    """A local, verified cache of one project's versioned release.

    Parameters
    ----------
    cache_dir
        The cache directory (created if missing). Many processes may share it.
    remote
        Where files come from, or None for an offline cache that serves only
        what it holds.
    project
        The project name: the prefix of every key and of the manifests folder.
    transfer_config
        Part size, concurrency and retry limits for downloads.
    progress
        Show tqdm progress bars for downloads.
    read_only
        Never write to ``cache_dir`` (e.g. a shared site copy owned by someone else).
    lock_timeout
        Seconds to wait for another process downloading the same file.
    usage_log
        A JSON-lines file to which every file use is appended (see
        :mod:`releasecache.cache.record`); defaults to ``$RELEASECACHE_USAGE_LOG``.
    layers, layer_link
        Read-only cache directories consulted before downloading, and how views
        reach their blobs (``"symlink"``, ``"hardlink"``, ``"copy"``); see
        :mod:`releasecache.store.layers`.
    lock_kind, lock_lease
        ``"posix"`` (default) or ``"soft"`` per-blob locks, and the soft locks'
        lease in seconds; see :mod:`releasecache.store.locks`.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        remote: Remote | None,
        project: str,
        *,
        transfer_config: TransferConfig | None = None,
        progress: bool = True,
        read_only: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        usage_log: str | os.PathLike[str] | None = None,
        layers: Iterable[str | os.PathLike[str]] = (),
        layer_link: str = "symlink",
        lock_kind: str | None = None,
        lock_lease: float = DEFAULT_LOCK_LEASE,
    ) -> None:
        check_relative_path(project, what="project name")
        self.project = project
        self.remote = remote
        self.store = Store(cache_dir, read_only=read_only, lock_timeout=lock_timeout, layers=list(layers),
                           layer_link=layer_link, lock_kind=lock_kind, lock_lease=lock_lease)
        self.transfer = Transfer(self.store, transfer_config)
        self.progress = progress
        self._manifest: Manifest | None = None
        self._remote_names: list[str] | None = None
        # Files returned by ensure() in this process, for used_files() / write_record().
        self.usage = UsageRecorder()
        self.usage_log = os.fspath(usage_log) if usage_log else os.environ.get(ENV_USAGE_LOG) or None

    # -- constructors -----------------------------------------------------------

    @classmethod
    def from_s3(
        cls,
        cache_dir: str | os.PathLike[str],
        bucket: str,
        project: str,
        *,
        endpoint_url: str | None = None,
        anonymous: bool = True,
        s3_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> "CloudCache":
        """A cache fed from an S3 bucket (anonymous by default)."""
        config = kwargs.get("transfer_config") or TransferConfig()
        kwargs["transfer_config"] = config
        remote = make_remote(bucket=bucket, endpoint_url=endpoint_url, anonymous=anonymous,
                             max_parts_in_flight=config.max_connections, s3_options=s3_options)
        return cls(cache_dir, remote, project, **kwargs)

    @classmethod
    def from_http(cls, cache_dir: str | os.PathLike[str], base_url: str, project: str, *,
                  http_options: dict[str, Any] | None = None, **kwargs: Any) -> "CloudCache":
        """A cache fed over plain HTTP(S) from a public bucket URL or a web mirror."""
        return cls(cache_dir, make_remote(http_url=base_url, http_options=http_options), project, **kwargs)

    @classmethod
    def from_mirror(cls, cache_dir: str | os.PathLike[str], mirror_dir: str | os.PathLike[str], project: str,
                    **kwargs: Any) -> "CloudCache":
        """A cache fed from a local directory laid out like the bucket (a mount or a sync)."""
        return cls(cache_dir, make_remote(mirror=mirror_dir), project, **kwargs)

    @classmethod
    def from_local_cache(cls, cache_dir: str | os.PathLike[str], project: str, **kwargs: Any) -> "CloudCache":
        """An offline cache: no network at all; serves only what ``cache_dir`` holds."""
        if not any((Path(d) / "manifests").is_dir() for d in [cache_dir, *kwargs.get("layers", ())]):
            raise OfflineError(f"{cache_dir} holds no downloaded manifests, so there is nothing to use offline; "
                               "create the cache with from_s3(...) first")
        return cls(cache_dir, None, project, **kwargs)

    def __repr__(self) -> str:
        loaded = self._manifest.name if self._manifest else "no manifest loaded"
        return f"<CloudCache {self.store.root} project={self.project!r} ({loaded}) from {self.remote!r}>"

    @property
    def cache_dir(self) -> Path:
        """The cache directory."""
        return self.store.root

    @property
    def offline(self) -> bool:
        """True if there is no remote (``from_local_cache``)."""
        return self.remote is None

    # -- manifests ----------------------------------------------------------------

    def list_manifest_file_names(self, *, refresh: bool = False) -> list[str]:
        """Names of all manifests of the project, oldest to newest by semver.

        Remote names when online (listed once, then remembered; ``refresh=True``
        lists again); the downloaded ones when offline.
        """
        if self.remote is None:
            return self.list_all_downloaded_manifests()
        if self._remote_names is None or refresh:
            self._remote_names = sort_manifest_names(self.remote.list_manifests(self.project))
        return list(self._remote_names)

    def latest_manifest_file(self) -> str:
        """The name of the newest manifest."""
        names = self.list_manifest_file_names()
        if not names:
            where = self.remote.describe() if self.remote else str(self.store.manifests_dir)
            raise ManifestNotFoundError(f"no manifests for project {self.project!r} in {where}")
        return names[-1]

    def list_all_downloaded_manifests(self) -> list[str]:
        """Names of the manifests already in the cache, oldest to newest."""
        return catalogue.downloaded_names(self.store, self.project)

    def known_manifest_names(self) -> list[str]:
        """Every manifest name known here: the remote's (when online) and the downloaded ones."""
        names = self.list_manifest_file_names()
        if self.remote is not None:
            names = sort_manifest_names(set(names) | set(self.list_all_downloaded_manifests()))
        return names

    def latest_known_manifest(self) -> str | None:
        """The newest manifest: the remote's when online, else the newest downloaded one (or None)."""
        if self.remote is None:
            return self.latest_downloaded_manifest_file()
        return self.latest_manifest_file()

    def latest_downloaded_manifest_file(self) -> str | None:
        """The newest manifest already in the cache, or None."""
        names = self.list_all_downloaded_manifests()
        return names[-1] if names else None

    def current_manifest(self) -> str | None:
        """The name of the loaded manifest, or None."""
        return self._manifest.name if self._manifest else None

    @property
    def loaded_manifest(self) -> Manifest | None:
        """The loaded manifest, or None (unlike :attr:`manifest`, which raises)."""
        return self._manifest

    @property
    def manifest(self) -> Manifest:
        """The loaded :class:`~releasecache.manifest.Manifest`."""
        if self._manifest is None:
            raise NoManifestLoadedError("no manifest is loaded; call load_manifest(name) or load_latest_manifest()")
        return self._manifest

    @property
    def version(self) -> str:
        """The loaded manifest's version, e.g. ``0.4.0``."""
        return self.manifest.version

    @property
    def file_id_column(self) -> str:
        """The metadata column that holds file ids (``file_id``)."""
        return self.manifest.file_id_column

    @property
    def metadata_file_names(self) -> list[str]:
        """Names of the loaded manifest's metadata files."""
        return self.manifest.metadata_file_names

    def get_manifest(self, name: str) -> Manifest:
        """Read a manifest by name: from the cache if present, else fetch, validate and save it.

        Nothing is written unless the manifest is valid.
        """
        return catalogue.read_manifest(self.store, self.remote, self.project, name, available=self._remote_names)

    def load_manifest(self, name: str) -> Manifest:
        """Load a manifest by name and make it current.

        Warns :class:`~releasecache.errors.OutdatedManifestWarning` if a newer
        manifest exists, with the calls that show the differences and load the latest.
        """
        manifest = self.get_manifest(name)
        if manifest.project_name != self.project:
            log.warning("manifest %s names project %r, this cache is for %r", name, manifest.project_name, self.project)
        self._manifest = manifest
        catalogue.remember_last_used(self.store, self.project, name)
        try:
            latest = self.latest_manifest_file()
        except ManifestNotFoundError:
            latest = name
        if latest != name:
            warnings.warn(catalogue.outdated_message(name, latest), OutdatedManifestWarning, stacklevel=2)
        self._on_manifest_loaded(manifest)
        return manifest

    def _on_manifest_loaded(self, manifest: Manifest) -> None:
        """Hook for subclasses and facades (e.g. to drop cached tables)."""

    def load_latest_manifest(self) -> Manifest:
        """Load the newest manifest."""
        return self.load_manifest(self.latest_manifest_file())

    def last_used_manifest_file(self) -> str | None:
        """The manifest loaded last time in this cache directory, if recorded."""
        return catalogue.last_used(self.store, self.project)

    def load_last_manifest(self) -> Manifest:
        """Load the manifest used last in this cache directory, else the latest."""
        name = self.last_used_manifest_file()
        if name is not None:
            try:
                return self.load_manifest(name)
            except ManifestNotFoundError:
                log.warning("last used manifest %s is gone; loading the latest", name)
        if self.remote is None:
            latest = self.latest_downloaded_manifest_file()
            if latest is None:
                raise ManifestNotFoundError(f"the offline cache {self.store.root} holds no manifest of {self.project!r}")
            return self.load_manifest(latest)
        return self.load_latest_manifest()

    def compare_manifests(self, manifest_0_name: str, manifest_1_name: str) -> ManifestDiff:
        """What changed from one manifest to another (fetching them if needed).

        ``print()`` the result for the familiar report (``project_metadata/units.csv changed``).
        """
        return compare_manifests(self.get_manifest(manifest_0_name), self.get_manifest(manifest_1_name))

    # -- entries ---------------------------------------------------------------

    def data_entry(self, file_id: int | str) -> FileEntry:
        """The manifest entry of a data file id."""
        return catalogue.data_entry(self.manifest, file_id)

    def metadata_entry(self, name: str) -> FileEntry:
        """The manifest entry of a metadata file (``units`` or ``units.csv``)."""
        return catalogue.metadata_entry(self.manifest, name)

    # -- local paths ------------------------------------------------------------

    def _local_path(self, entry: FileEntry) -> dict[str, Any]:
        path = self.store.view_path(self.manifest.view_dir_name, entry.relative_path)
        return {"local_path": path, "exists": self.store.has_blob(entry.file_hash),
                "file_hash": entry.file_hash, "version_id": entry.version_id, "url": entry.url}

    def data_path(self, file_id: int | str) -> dict[str, Any]:
        """Where a data file lives in the cache and whether it is there (downloads nothing)."""
        return self._local_path(self.data_entry(file_id))

    def metadata_path(self, name: str) -> dict[str, Any]:
        """Where a metadata file lives in the cache and whether it is there (downloads nothing)."""
        return self._local_path(self.metadata_entry(name))

    def is_cached(self, entry: FileEntry) -> bool:
        """True if the verified content of ``entry`` is in the store."""
        return self.store.has_blob(entry.file_hash)

    # -- downloads ---------------------------------------------------------------

    def ensure(self, entry: FileEntry, *, progress: Callable[[int], None] | None = None) -> Path:
        """Make ``entry`` present and verified, link its view path, and return that path.

        The file is noted for :meth:`used_files` (and the usage log, if any).
        """
        path = ensure_entry(self.store, self.transfer, self.remote, self.manifest, entry, progress=progress,
                            show_bar=self.progress)
        record.note_used(self, entry)
        return path

    def used_files(self) -> list[dict[str, Any]]:
        """Every file this cache object returned a path for (or streamed), in this process.

        Each record has the manifest name and version, the path in the release,
        ``file_hash``, ``version_id``, ``url``, and ``streamed`` (True if its bytes
        were read remotely without hash verification).
        """
        return self.usage.records()

    def write_record(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The reproducibility lock of :meth:`used_files` and their manifests; written to ``path`` if given.

        See :mod:`releasecache.cache.record` for the format.
        """
        lock = record.cache_lock(self)
        if path is not None:
            record.write_lock(lock, path)
        return lock

    def download_data(self, file_id: int | str) -> Path:
        """Return the local path of a data file, downloading and verifying it if needed."""
        return self.ensure(self.data_entry(file_id))

    def download_metadata(self, name: str) -> Path:
        """Return the local path of a metadata CSV, downloading and verifying it if needed."""
        return self.ensure(self.metadata_entry(name))

    def get_metadata(self, name: str) -> "pd.DataFrame":
        """A metadata CSV as a plain DataFrame (downloaded if needed)."""
        import pandas as pd  # imported here: plain downloads should not pay for pandas

        return pd.read_csv(self.download_metadata(name))

    def entries_for(self, file_ids: Iterable[int | str] | None = None) -> list[FileEntry]:
        """Entries of the given data file ids, or every file of the manifest."""
        if file_ids is None:
            return list(self.manifest.entries())
        return [self.data_entry(f) for f in file_ids]

    # -- bulk ------------------------------------------------------------------

    def plan_prefetch(self, file_ids: Iterable[int | str] | None = None, *, metadata: bool = True,
                      stat_remote: bool = False) -> "PrefetchPlan":
        """What :meth:`prefetch` would do: bytes to fetch, present, reusable from other versions."""
        return prefetch.plan(self, self._bulk_entries(file_ids, metadata), stat_remote=stat_remote)

    def _bulk_entries(self, file_ids: Iterable[int | str] | None, metadata: bool) -> list[FileEntry]:
        if file_ids is None:
            entries = list(self.manifest.data_files.values())
        else:
            entries = [self.data_entry(f) for f in file_ids]
        if metadata:
            entries = list(self.manifest.metadata_files.values()) + entries
        return entries

    def prefetch(
        self,
        file_ids: Iterable[int | str] | None = None,
        *,
        metadata: bool = True,
        executor: Any = None,
        max_files: int = 16,
        progress: bool | None = None,
        stat_remote: bool = False,
        shard: tuple[int, int] | None = None,
    ) -> "PrefetchReport":
        """Download many files of the current manifest at once.

        Parameters
        ----------
        file_ids
            Data file ids to fetch; None means every data file of the manifest.
        metadata
            Also fetch the metadata CSVs.
        executor
            Any :class:`concurrent.futures.Executor` (e.g. Dask's
            ``client.get_executor()``); threads by default.
        max_files
            Files fetched at once with the default executor (each file also
            uses ranged parts in parallel).
        progress
            One aggregated progress bar (defaults to the cache's setting).
        stat_remote
            Ask the remote for sizes first, so the plan and the bar show bytes.
        shard
            ``(k, n)``: fetch only the k-th of n deterministic shards (job arrays).

        Returns
        -------
        PrefetchReport
            Fetched, reused (linked from other versions), present, and failed
            files with reasons. One failure never stops the others.
        """
        entries = self._bulk_entries(file_ids, metadata)
        if shard is not None:
            entries = prefetch.shard(entries, *shard)
        return prefetch.prefetch(self, entries, executor=executor, max_files=max_files,
                        progress=self.progress if progress is None else progress, stat_remote=stat_remote)

    # -- maintenance (see releasecache.cache.verify) --------------------------------

    def _manifest_arg(self, manifest: "str | Manifest | None") -> "Manifest | None":
        if manifest is None or isinstance(manifest, Manifest):
            return manifest
        return self.get_manifest(manifest)

    def verify(self, manifest: "str | Manifest | None" = None, *, mode: str = "fast") -> "VerifyReport":
        """Re-check blobs (of one manifest, or all); move corrupt ones aside so they download again.

        ``mode="fast"`` checks sizes and publish-time stamps, hashing only blobs
        whose stamp changed; ``mode="full"`` hashes everything. Returns a
        :class:`~releasecache.cache.verify.VerifyReport` (``.ok``, ``.corrupt``,
        ``.missing``, ``.to_dict()``). Every manifest saved in the cache is parsed
        too; one that no longer does is fetched again and replaced when online
        (``.damaged_manifests``).
        """
        checked, damaged = catalogue.check_saved_manifests(self.store)
        catalogue.repair_saved_manifests(self.store, self.remote, self.project, damaged)
        report = verify.verify(self.store, self._manifest_arg(manifest), mode=mode)
        report.manifests_checked, report.damaged_manifests = checked, damaged
        return report

    def disk_usage(self) -> "DiskUsage":
        """Bytes per downloaded manifest (unique vs shared with other manifests) and in total."""
        return du.disk_usage(self.store)

    def gc(self, keep: "Iterable[str | Manifest] | None" = None, *, dry_run: bool = True,
           partial_age_days: float | None = DEFAULT_PARTIAL_AGE_DAYS) -> "GCReport":
        """Delete blobs no kept manifest needs, and the views of versions not kept.

        ``keep`` defaults to the loaded manifest (else the last used one).
        Blobs whose lock another process holds are skipped. ``dry_run=True``
        (the default) only reports. Partial downloads untouched for
        ``partial_age_days`` are removed too (None: keep them).
        """
        if keep is None:
            name = self.current_manifest() or self.last_used_manifest_file()
            if name is None:
                raise NoManifestLoadedError("gc needs to know what to keep: pass keep=[manifest names] or load one")
            keep = [name]
        elif isinstance(keep, (str, Manifest)):
            keep = [keep]
        kept = [self._manifest_arg(m) for m in keep]
        return gc.gc(self.store, [m for m in kept if m is not None], self.project, dry_run=dry_run,
                  partial_age_days=partial_age_days)
