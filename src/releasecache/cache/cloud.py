"""The resolver: which manifests exist, which one is loaded, and where its files are.

:class:`CloudCache` is the layer scientists rarely see directly: it lists and
orders manifests, remembers the last one used, warns when it is outdated, maps
file ids and metadata names to manifest entries, and asks the transfer layer for
any file that is not yet in the store.

It is a thin facade: each method hands the work to a small module of this
package (:mod:`.loading` and :mod:`.catalogue` for manifests, :mod:`.fetch` for
``ensure``, :mod:`.attributes` for local paths, :mod:`.prefetch`, :mod:`.record`,
:mod:`.eviction` and :mod:`.budget`, :mod:`.maintenance` for verify and gc,
:mod:`.du`, :mod:`.adopt`). Why this module is longer than the others: it is the
public API of some fifty methods, and their numpydoc docstrings, the API
reference, are most of its lines.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..config import DEFAULT_LOCK_LEASE, DEFAULT_LOCK_TIMEOUT, DEFAULT_PARTIAL_AGE_DAYS, ENV_MAX_SIZE, ENV_USAGE_LOG, env
from ..errors import (
    InvalidArgumentError,
    NoManifestLoadedError,
    OfflineError,
)
from ..manifest import (
    FileEntry,
    Manifest,
    ManifestDiff,
    check_relative_path,
    compare_manifests,
    resolve_manifest_spec,
)
from ..remote import Remote, make_remote
from ..store import Store
from ..transfer import Transfer, TransferConfig
from . import budget, catalogue, eviction, loading, record, verify
from .attributes import CacheFileAttributes, file_attributes, local_path
from .fetch import ensure_entry
from .usage import UsageRecorder

if TYPE_CHECKING:
    import pandas as pd

    from ..transfer import CancelToken, FetchOutcome
    from .du import DiskUsage
    from .gc import GCReport
    from .prefetch import PrefetchPlan, PrefetchReport
    from .verify import VerifyReport
    from .adopt import AdoptReport


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
        ``"auto"`` (default: probe whether the filesystem's locks exclude, and
        fall back to soft locks with a warning where they do not), ``"posix"``
        or ``"soft"`` per-blob locks, and the soft locks' lease in seconds; see
        :mod:`releasecache.store.locks`.
    integrity
        What is checked when a file already in the cache is handed out:
        ``"never"`` (default; ``$RELEASECACHE_INTEGRITY``), ``"fast"`` (its size
        and verification stamp; hashed if they changed) or ``"full"`` (hashed,
        once per process). A file that fails is moved aside and downloaded again.
    max_size
        A size budget for the blob store (``"400GB"`` or bytes; default
        ``$RELEASECACHE_MAX_SIZE``, else none): a download that would exceed it
        first evicts least-recently-used blobs that no pinned manifest lists;
        see :mod:`releasecache.cache.budget`.
    ui_name
        The class name warnings tell the user to call (``ProjectCache.load_manifest(...)``);
        defaults to this object's class name.
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
        integrity: str | None = None,
        max_size: int | str | None = None,
        ui_name: str | None = None,
    ) -> None:
        if not isinstance(cache_dir, (str, os.PathLike)):
            raise InvalidArgumentError(f"cache_dir must be a path (str or os.PathLike), got "
                                       f"{type(cache_dir).__name__} {cache_dir!r}")
        check_relative_path(project, what="project name")
        self.integrity = verify.resolve_integrity(integrity)
        if max_size is None:
            max_size = env(ENV_MAX_SIZE)
        try:
            self.max_size: int | None = None if max_size is None else budget.parse_size(max_size)
        except ValueError as exc:
            raise InvalidArgumentError(f"max_size: {exc}") from None
        self.project = project
        self.remote = remote
        self.store = Store(cache_dir, read_only=read_only, lock_timeout=lock_timeout, layers=list(layers),
                           layer_link=layer_link, lock_kind=lock_kind, lock_lease=lock_lease)
        self.transfer = Transfer(self.store, transfer_config)
        self.progress = progress
        # The loaded manifest, the remote's listing and the outdated-warning memory (see loading.LoadState).
        self._state = loading.LoadState()
        # Files returned by ensure() in this process, for used_files() / write_record().
        self.usage = UsageRecorder()
        self.usage_log = os.fspath(usage_log) if usage_log else os.environ.get(ENV_USAGE_LOG) or None
        self.ui_name = ui_name or type(self).__name__
        #: Called with each manifest about to be loaded; raising refuses it (the VBN facade checks its version).
        self.check_manifest: Callable[[Manifest], None] | None = None
        catalogue.warn_of_allensdk_files(self.store, self.ui_name)

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
        loaded = self._state.manifest.name if self._state.manifest else "no manifest loaded"
        return f"<CloudCache {self.store.root} project={self.project!r} ({loaded}) from {self.remote!r}>"

    @property
    def cache_dir(self) -> Path:
        """The cache directory."""
        return self.store.root

    @property
    def offline(self) -> bool:
        """True if there is no remote (``from_local_cache``)."""
        return self.remote is None

    @property
    def project_name(self) -> str:
        """The project name (AllenSDK's name for :attr:`project`)."""
        return self.project

    # -- manifests ----------------------------------------------------------------

    def list_manifest_file_names(self, *, refresh: bool = False) -> list[str]:
        """Names of all manifests of the project, oldest to newest by semver.

        Remote names when online (listed once, then remembered; ``refresh=True``
        lists again); the downloaded ones when offline.
        """
        return loading.list_names(self, self._state, refresh=refresh)

    def latest_manifest_file(self) -> str:
        """The name of the newest manifest."""
        return loading.latest_name(self)

    def list_all_downloaded_manifests(self) -> list[str]:
        """Names of the manifests already in the cache, oldest to newest."""
        return catalogue.downloaded_names(self.store, self.project)

    def known_manifest_names(self) -> list[str]:
        """Every manifest name known here: the remote's (when online) and the downloaded ones."""
        return loading.known_names(self)

    def latest_known_manifest(self) -> str | None:
        """The newest manifest: the remote's when online, else the newest downloaded one (or None)."""
        return loading.latest_known(self)

    def latest_downloaded_manifest_file(self) -> str:
        """The newest manifest already in the cache, or ``''`` if there is none (as in AllenSDK)."""
        names = self.list_all_downloaded_manifests()
        return names[-1] if names else ""

    def current_manifest(self) -> str | None:
        """The name of the loaded manifest, or None."""
        return self._state.manifest.name if self._state.manifest else None

    @property
    def loaded_manifest(self) -> Manifest | None:
        """The loaded manifest, or None (unlike :attr:`manifest`, which raises)."""
        return self._state.manifest

    @property
    def manifest(self) -> Manifest:
        """The loaded :class:`~releasecache.manifest.Manifest`."""
        if self._state.manifest is None:
            raise NoManifestLoadedError("no manifest is loaded; call load_manifest(name) or load_latest_manifest()")
        return self._state.manifest

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

    def resolve_manifest_name(self, spec: str) -> str:
        """The manifest name ``spec`` means: a manifest name, or a version (``"0.4.0"``, ``"v0.4.0"``).

        ``"latest"`` and ``"last"`` work as on the command line.

        Raises
        ------
        ManifestNotFoundError
            If no manifest of that name or version exists (a ``ValueError``);
            the message lists the valid names.
        """
        if not isinstance(spec, str):
            raise InvalidArgumentError(f"a manifest name or version (str) is expected, got {type(spec).__name__} "
                                       f"{spec!r}")
        return resolve_manifest_spec(spec, names=self.known_manifest_names, latest=self.latest_known_manifest,
                                     last=self.last_used_manifest_file, project=self.project)

    def get_manifest(self, name: str) -> Manifest:
        """Read a manifest by name or version: from the cache if present, else fetch, validate and save it.

        Nothing is written unless the manifest is valid.
        """
        return catalogue.read_manifest(self.store, self.remote, self.project, self.resolve_manifest_name(name),
                                       available=self._state.remote_names)

    def load_manifest(self, name: str) -> Manifest:
        """Load a manifest by name (or version, ``"0.4.0"``) and make it current.

        Warns :class:`~releasecache.errors.OutdatedManifestWarning` if a newer
        manifest exists, with the calls that show the differences and load the
        latest: once per cache object and latest manifest, as AllenSDK does.
        """
        manifest = loading.load(self, self._state, name)
        self._on_manifest_loaded(manifest)
        return manifest

    def _on_manifest_loaded(self, manifest: Manifest) -> None:
        """Hook for subclasses and facades (e.g. to drop cached tables)."""

    def load_latest_manifest(self) -> Manifest:
        """Load the newest manifest.

        Warns :class:`~releasecache.errors.OutdatedManifestWarning` when that
        moves past the newest manifest this cache directory used before (files
        that changed between the two will download again).
        """
        return self.load_manifest(loading.latest_to_load(self))

    def last_used_manifest_file(self) -> str | None:
        """The manifest loaded last time in this cache directory, if recorded."""
        return catalogue.last_used(self.store, self.project)

    def load_last_manifest(self) -> Manifest:
        """Load the manifest used last in this cache directory, else the latest.

        As in AllenSDK: if it is not the latest, an
        :class:`~releasecache.errors.OutdatedManifestWarning` says so (and loading
        it warns no more); a record that is damaged or names no manifest of the
        dataset warns (``UserWarning``) and the latest is loaded.
        """
        return self.load_manifest(loading.last_to_load(self, self._state))

    def compare_manifests(self, manifest_0_name: str, manifest_1_name: str) -> ManifestDiff:
        """What changed from one manifest to another (names or versions; fetched if needed).

        Returns AllenSDK's report as a ``str`` (``print()`` it), which also
        carries the structured changes; see :class:`~releasecache.manifest.ManifestDiff`.
        """
        return compare_manifests(self.get_manifest(manifest_0_name), self.get_manifest(manifest_1_name))

    def summarize_comparison(self, manifest_0_name: str, manifest_1_name: str) -> dict[str, list[tuple[str, str]]]:
        """AllenSDK's summary of :meth:`compare_manifests`: ``{"metadata_changes": [(path, line)], "data_changes": [...]}``.

        Each ``line`` is one line of the report, e.g. ``("data/f2.txt", "data/f2.txt deleted")``.
        """
        diff = self.compare_manifests(manifest_0_name, manifest_1_name)
        return {"metadata_changes": [(c.path, str(c)) for c in sorted(diff.metadata_changes, key=lambda c: c.path)],
                "data_changes": [(c.path, str(c)) for c in sorted(diff.data_changes, key=lambda c: c.path)]}

    # -- entries ---------------------------------------------------------------

    def data_entry(self, file_id: int | str) -> FileEntry:
        """The manifest entry of a data file id."""
        return catalogue.data_entry(self.manifest, file_id)

    def metadata_entry(self, name: str) -> FileEntry:
        """The manifest entry of a metadata file (``units`` or ``units.csv``)."""
        return catalogue.metadata_entry(self.manifest, name)

    # -- local paths ------------------------------------------------------------

    def data_path(self, file_id: int | str) -> dict[str, Any]:
        """Where a data file lives in the cache and whether it is there (downloads nothing).

        Keys as in AllenSDK: ``local_path``, ``exists``, ``file_attributes``
        (a :class:`~releasecache.cache.CacheFileAttributes`), and also
        ``file_hash``, ``version_id``, ``url``.
        """
        return local_path(self.store, self.manifest.view_dir_name, self.data_entry(file_id))

    def metadata_path(self, name: str) -> dict[str, Any]:
        """Where a metadata file lives in the cache and whether it is there (downloads nothing); keys as :meth:`data_path`."""
        return local_path(self.store, self.manifest.view_dir_name, self.metadata_entry(name))

    def get_file_attributes(self, file_id: int | str) -> CacheFileAttributes:
        """The :class:`~releasecache.cache.CacheFileAttributes` of a data file (downloads nothing)."""
        return file_attributes(self.store, self.manifest.view_dir_name, self.data_entry(file_id))

    def construct_local_manifest(self, *, dry_run: bool = False, progress: bool | None = None) -> "AdoptReport":
        """Re-index this cache directory: bring in files found at version paths, and relink every version path.

        AllenSDK rebuilds its ``_downloaded_data.json`` here. In this cache the
        directory is the index, so the equivalent is: every regular file found
        at ``<project>-<version>/<path>`` that the store does not hold yet (for
        instance one an AllenSDK cache left in this directory) is hashed against
        the manifest of that version and, if it matches, hard-linked into the
        store (no extra space, nothing downloaded again); then every version path
        whose content is stored is linked. Files that do not match are left
        where they are and reported. Manifests an AllenSDK cache saved at the
        top of the directory are validated and used.

        Returns
        -------
        AdoptReport
            What was adopted, already present, mismatched, missing, and linked.
        """
        from .adopt import adopt  # adopt imports the cache layer's pieces; loaded only when asked for

        report = adopt(self, self.cache_dir, mode="hardlink", dry_run=dry_run, in_place=True,
                       progress=self.progress if progress is None else progress)
        if not dry_run:
            self.store.update_state(allensdk_files_indexed=True)
        return report

    def is_cached(self, entry: FileEntry) -> bool:
        """True if the verified content of ``entry`` is in the store."""
        return self.store.has_blob(entry.file_hash)

    # -- downloads ---------------------------------------------------------------

    def ensure(self, entry: FileEntry, *, progress: Callable[[int], None] | None = None,
               token: "CancelToken | None" = None, outcome: "FetchOutcome | None" = None) -> Path:
        """Make ``entry`` present and verified, link its view path, and return that path.

        The file is noted for :meth:`used_files` (and the usage log, if any).
        ``token`` stops the download with the rest of a run (Ctrl-C, a dead
        server); ``outcome`` is filled in with what crossed the wire (see
        :class:`~releasecache.transfer.engine.FetchOutcome`).
        """
        manifest = self.manifest
        if self.integrity != "never":
            verify.check_on_open(self.store, entry.file_hash, entry.size, self.integrity)
        reserved = 0
        if self.max_size is not None and self.remote is not None and not self.store.read_only \
                and not self.store.has_blob(entry.file_hash):
            reserved = self._make_room(entry)
        try:
            path = ensure_entry(self.store, self.transfer, self.remote, manifest, entry, progress=progress,
                                show_bar=self.progress, token=token, outcome=outcome)
        finally:
            if reserved:
                budget.release(self.store, entry.file_hash)
        record.note_used(self, entry)
        return path

    def reading(self, entry: FileEntry) -> "AbstractContextManager[Path]":
        """``ensure`` the entry and hold a read lease on its blob while the block runs.

        The lease is a shared ``flock`` on the blob (:func:`releasecache.cache.budget.read_lease`):
        neither ``gc`` nor the size budget deletes a blob while another process reads it this
        way (gc reports it as busy). Paths used otherwise are protected by gc's usage window:
        their manifest was used, so its files stay.
        """
        return eviction.reading(self, entry)

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
                      stat_remote: bool | None = None) -> "PrefetchPlan":
        """What :meth:`prefetch` would do: bytes to fetch, present, reusable from other versions."""
        # imported on first use, as below: a start that reads a few files needs no bulk or maintenance code
        from . import prefetch

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
        stat_remote: bool | None = None,
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
            Ask the remote (HEAD) for sizes that neither the manifest nor the cache
            knows, so the plan and the bar show bytes, a percentage and an ETA.
            True: ask; False: do not (the bar's total then grows as files start);
            None (the default): ask only when a progress bar is shown, since
            asking costs round trips before the first byte. Sizes learned are
            remembered in the cache.
        shard
            ``(k, n)``: fetch only the k-th of n deterministic shards (job arrays).

        Returns
        -------
        PrefetchReport
            Fetched, reused (linked from other versions), present, and failed
            files with reasons. One failure never stops the others.
        """
        # imported on first use
        from . import prefetch

        entries = self._bulk_entries(file_ids, metadata)
        if shard is not None:
            entries = prefetch.shard(entries, *shard)
        return prefetch.prefetch(self, entries, executor=executor, max_files=max_files,
                        progress=self.progress if progress is None else progress, stat_remote=stat_remote)

    # -- maintenance (see releasecache.cache.verify) --------------------------------

    # -- the size budget (see releasecache.cache.budget) ------------------------------

    def pin(self, manifest: "str | Manifest") -> str:
        """Pin a manifest (name, version or object): the budget never evicts its files. Returns its name."""
        return eviction.pin(self, manifest)

    def unpin(self, manifest: "str | Manifest") -> bool:
        """Remove a pin; True if there was one."""
        return budget.unpin(self.store, eviction.pin_name(self, manifest))

    def pinned_manifests(self) -> list[str]:
        """The manifests whose files the budget keeps: the explicit pins plus the current manifest."""
        return eviction.pinned_manifests(self)

    def evict(self, max_size: int | str | None = None, *, incoming: int = 0, dry_run: bool = True,
              in_flight: dict[str, int] | None = None) -> "budget.EvictionReport":
        """Evict least-recently-used blobs until ``incoming`` more bytes fit in the budget.

        ``max_size`` defaults to the cache's budget. ``dry_run=True`` (the
        default) only reports what would go.
        """
        return eviction.evict(self, max_size, incoming=incoming, dry_run=dry_run, in_flight=in_flight)

    def _make_room(self, entry: FileEntry) -> int:
        """Evict what the budget requires before ``entry`` downloads; see :func:`.eviction.make_room`."""
        return eviction.make_room(self, entry)

    def check_release(self, *, server: bool = True) -> list[str]:
        """Publisher mistakes in the saved manifests (and, with ``server``, manifests the bucket now serves changed).

        Each is issued as a :class:`~releasecache.errors.PublisherWarning`; returns the messages.
        """
        return catalogue.check_release(self.store, self.remote if server else None, self.project)

    def verify(self, manifest: "str | Manifest | None" = None, *, mode: str = "fast",
               max_seconds: float | None = None, max_bytes: int | None = None, resume: bool = True,
               fix_permissions: bool = False) -> "VerifyReport":
        """Re-check blobs (of one manifest, or all); move corrupt ones aside so they download again.

        ``mode="fast"`` checks sizes and publish-time stamps, hashing only blobs
        whose stamp changed; ``mode="full"`` hashes everything, incrementally:
        oldest-verified first, within ``max_seconds`` / ``max_bytes`` per run, and
        a stopped (or killed) pass continues where it stopped (``resume=False``
        starts over). Modes that lock the cache's group out are reported, and
        repaired where this user may with ``fix_permissions=True``. Returns a
        :class:`~releasecache.cache.verify.VerifyReport` (``.ok``, ``.corrupt``,
        ``.missing``, ``.complete``, ``.permissions``, ``.to_dict()``). Every manifest
        saved in the cache is parsed too; one that no longer does is fetched again and
        replaced when online (``.damaged_manifests``).
        """
        # imported on first use
        from . import maintenance

        return maintenance.verify_cache(self, manifest, mode=mode, max_seconds=max_seconds, max_bytes=max_bytes,
                                        resume=resume, fix_permissions=fix_permissions)

    def disk_usage(self) -> "DiskUsage":
        """Bytes per downloaded manifest (unique vs shared with other manifests) and in total."""
        # imported on first use
        from . import du

        return du.disk_usage(self.store)

    def gc(self, keep: "Iterable[str | Manifest] | None" = None, *, dry_run: bool = True,
           partial_age_days: float | None = DEFAULT_PARTIAL_AGE_DAYS, window_days: float | None = None) -> "GCReport":
        """Delete blobs no kept manifest needs, and the views of versions not kept.

        ``keep`` defaults to the loaded manifest (else the last used one). Every
        manifest that anybody used in this cache within ``window_days`` (default
        ``$RELEASECACHE_GC_WINDOW_DAYS``, else 30; 0: only ``keep``) stays too.
        Blobs whose lock another process holds (downloading, or reading through
        :meth:`reading`) are skipped. ``dry_run=True`` (the default) only reports,
        per manifest, what would go and why. Partial downloads untouched for
        ``partial_age_days`` are removed too (None: keep them).
        """
        # imported on first use
        from . import maintenance

        return maintenance.gc_cache(self, keep, dry_run=dry_run, partial_age_days=partial_age_days,
                                    window_days=window_days)
