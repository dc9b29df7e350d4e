"""The ``releasecache`` command: list, compare, download, check, adopt and publish releases.

Argument parsing only: every command calls the library (:class:`~releasecache.cache.CloudCache`,
:mod:`~releasecache.bulk`, :mod:`~releasecache.adopt`, :mod:`~releasecache.publish`,
:mod:`~releasecache.record`, :mod:`~releasecache.maintenance`).

Exit codes (stable; scripts may rely on them):

===  =====================================================================================
 0   success
 1   some files failed: a download failed, ``verify`` found corrupt files, ``adopt`` found
     files whose content does not match the manifest, ``diff --exit-code`` found changes
 2   usage error: bad option, unknown manifest, version, file id or session, wrong directory
 3   integrity or manifest error: an invalid or unsafe manifest, a hash or version mismatch
 4   network or remote error: unreachable, refused, or still failing after retries
 5   offline: the file is not in the cache and ``--offline`` forbids downloading it
 6   storage error: the cache directory cannot be written (permissions, full disk), lock timeout
 70  internal error (a bug: please report it with the traceback printed)
 130 interrupted (Ctrl-C)
===  =====================================================================================

With ``--json`` a command prints one JSON document on standard output (also for
errors: ``{"error": {"type", "message", "exit_code"}}``); messages, warnings and
progress bars go to standard error.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NoReturn

import click

from . import errors as E

if TYPE_CHECKING:
    from .cache import CloudCache
    from .manifest import FileEntry, Manifest

#: Defaults: the public Visual Behavior Neuropixels release.
DEFAULT_BUCKET = "visual-behavior-neuropixels-data"
DEFAULT_PROJECT = "visual-behavior-neuropixels"

EXIT_OK = 0
EXIT_FILES_FAILED = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3
EXIT_NETWORK = 4
EXIT_OFFLINE = 5
EXIT_STORAGE = 6
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

#: Exception class -> exit code; the first match in this order wins.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (E.OfflineError, EXIT_OFFLINE),
    (E.ManifestNotFoundError, EXIT_USAGE),
    (E.UnknownFileError, EXIT_USAGE),
    (E.UnknownSessionError, EXIT_USAGE),
    (E.NoManifestLoadedError, EXIT_USAGE),
    (E.SourceLayoutError, EXIT_USAGE),
    (E.ManifestError, EXIT_INTEGRITY),
    (E.IntegrityError, EXIT_INTEGRITY),
    (E.RemoteError, EXIT_NETWORK),
    (E.DownloadError, EXIT_NETWORK),
    (E.StorageError, EXIT_STORAGE),
    (E.LockTimeoutError, EXIT_STORAGE),
    (E.ReleaseCacheError, EXIT_FILES_FAILED),
]
for _name in ("MetadataTableError", "NwbLayoutError"):
    if hasattr(E, _name):
        EXIT_CODES.insert(0, (getattr(E, _name), EXIT_INTEGRITY))

log = logging.getLogger("releasecache")


def exit_code_for(exc: BaseException) -> int:
    """The exit code the command line uses for an exception."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_INTERNAL


# -- shared state ------------------------------------------------------------------


@dataclass
class Settings:
    """The global options, shared by every command."""

    cache_dir: Path | None
    bucket: str
    project: str
    endpoint_url: str | None
    http_url: str | None
    mirror: Path | None
    offline: bool
    signed: bool
    profile: str | None
    layers: list[Path] = field(default_factory=list)
    progress: bool | None = None
    json: bool = False

    @property
    def show_progress(self) -> bool:
        if self.progress is not None:
            return self.progress
        return not self.json and sys.stderr.isatty()

    def require_cache_dir(self) -> Path:
        if self.cache_dir is None:
            raise click.UsageError("no cache directory: pass --cache-dir DIR or set RELEASECACHE_CACHE_DIR")
        return self.cache_dir

    def describe_source(self) -> str:
        if self.offline:
            return "offline"
        if self.mirror:
            return f"mirror {self.mirror}"
        if self.http_url:
            return self.http_url
        return f"s3://{self.bucket}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def remote(self) -> Any:
        """The remote the options name, or None when offline."""
        if self.offline:
            return None
        if self.mirror:
            from .remote.local import LocalRemote

            return LocalRemote(self.mirror)
        if self.http_url:
            from .remote.http import HttpRemote

            return HttpRemote(self.http_url)
        from .remote.s3 import S3Remote

        return S3Remote(self.bucket, endpoint_url=self.endpoint_url, anonymous=not self.signed,
                        profile_name=self.profile)

    def cache(self, **kwargs: Any) -> "CloudCache":
        """A :class:`CloudCache` on ``--cache-dir`` fed from the chosen source."""
        from .cache import CloudCache
        from .transfer import TransferConfig

        root = self.require_cache_dir()
        config = TransferConfig()
        remote = self.remote()
        if remote is not None and hasattr(remote, "max_pool_connections"):
            remote.max_pool_connections = max(remote.max_pool_connections, 2 * config.max_parts_in_flight)
        options: dict[str, Any] = {"transfer_config": config, "progress": self.show_progress}
        if self.layers:
            options["layers"] = list(self.layers)
        options.update(kwargs)
        return CloudCache(root, remote, self.project, **options)


def _settings(ctx: click.Context) -> Settings:
    return ctx.find_object(Settings)  # type: ignore[return-value]


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _say(message: str) -> None:
    """A message for people (standard error, so standard output stays machine-readable)."""
    click.echo(message, err=True)


def _human(n: int | float | None) -> str:
    from .units import human_bytes as human

    return "?" if n is None else human(n)


class ReleaseCacheGroup(click.Group):
    """Maps library exceptions to the documented exit codes and messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            _say("releasecache: interrupted")
            ctx.exit(EXIT_INTERRUPTED)
        except E.ReleaseCacheError as exc:
            self._fail(ctx, exc, exit_code_for(exc))
        except Exception as exc:  # a bug: show everything
            traceback.print_exc()
            self._fail(ctx, exc, EXIT_INTERNAL)

    @staticmethod
    def _fail(ctx: click.Context, exc: BaseException, code: int) -> NoReturn:
        settings = ctx.find_object(Settings)
        message = str(exc) or type(exc).__name__
        if settings is not None and settings.json:
            _emit_json({"error": {"type": type(exc).__name__, "message": message, "exit_code": code}})
        _say(f"releasecache: error: {message}")
        ctx.exit(code)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    text = str(message).strip().replace("\n", "\n  ")
    click.echo(f"releasecache: warning: {text}", err=True)


# -- the group -----------------------------------------------------------------------------


@click.group(cls=ReleaseCacheGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="RELEASECACHE_CACHE_DIR",
              help="The cache directory (created if missing; may be shared by many processes). "
                   "[env: RELEASECACHE_CACHE_DIR]")
@click.option("--bucket", default=DEFAULT_BUCKET, show_default=True, envvar="RELEASECACHE_BUCKET",
              help="S3 bucket of the release. [env: RELEASECACHE_BUCKET]")
@click.option("--project", default=DEFAULT_PROJECT, show_default=True, envvar="RELEASECACHE_PROJECT",
              help="Project name: the key prefix in the bucket. [env: RELEASECACHE_PROJECT]")
@click.option("--endpoint-url", envvar="RELEASECACHE_ENDPOINT_URL", metavar="URL",
              help="A custom S3 endpoint (a mirror, MinIO, a test server). [env: RELEASECACHE_ENDPOINT_URL]")
@click.option("--http-url", envvar="RELEASECACHE_HTTP_URL", metavar="URL",
              help="Fetch over plain HTTP(S) from this bucket-root URL instead of the S3 API. "
                   "[env: RELEASECACHE_HTTP_URL]")
@click.option("--mirror", type=click.Path(exists=True, file_okay=False, path_type=Path), envvar="RELEASECACHE_MIRROR",
              help="Fetch from a local copy of the bucket (a mount or an 'aws s3 sync'). [env: RELEASECACHE_MIRROR]")
@click.option("--offline", is_flag=True, envvar="RELEASECACHE_OFFLINE",
              help="Use no network: serve only what the cache holds. [env: RELEASECACHE_OFFLINE]")
@click.option("--signed", is_flag=True, envvar="RELEASECACHE_SIGNED",
              help="Sign S3 requests with your AWS credentials (default: anonymous). [env: RELEASECACHE_SIGNED]")
@click.option("--profile", envvar="RELEASECACHE_PROFILE", metavar="NAME",
              help="AWS profile for signed requests and for publish. [env: RELEASECACHE_PROFILE]")
@click.option("--layer", "layers", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              envvar="RELEASECACHE_LAYERS",
              help="A read-only cache directory consulted before downloading (repeatable; e.g. a site-wide "
                   "copy). [env: RELEASECACHE_LAYERS, separated by ':']")
@click.option("--progress/--no-progress", default=None,
              help="Progress bars on standard error (default: only when it is a terminal).")
@click.option("-v", "--verbose", count=True, help="More log messages (-vv for debugging).")
@click.version_option(package_name="releasecache", prog_name="releasecache")
@click.pass_context
def cli(ctx: click.Context, cache_dir: Path | None, bucket: str, project: str, endpoint_url: str | None,
        http_url: str | None, mirror: Path | None, offline: bool, signed: bool, profile: str | None,
        layers: tuple[Path, ...], progress: bool | None, verbose: int) -> None:
    """A verified, version-aware local cache of a scientific data release on S3.

    By default it reads the public Visual Behavior Neuropixels release
    anonymously. Point it at any release published the same way with --bucket,
    --project and --endpoint-url (or --http-url / --mirror).

    \b
    Typical use:
      releasecache --cache-dir ~/vbn manifests
      releasecache --cache-dir ~/vbn download --metadata-only
      releasecache --cache-dir ~/vbn download --version 0.5.0 --shard 3/16
      releasecache --cache-dir ~/vbn diff 0.4.0 0.5.0 --markdown
      releasecache --cache-dir ~/vbn adopt ~/old_allensdk_cache

    Exit codes: 0 ok, 1 some files failed, 2 usage error, 3 integrity or
    manifest error, 4 network error, 5 offline and not cached, 6 storage error,
    70 internal error, 130 interrupted.
    """
    if sum(bool(x) for x in (http_url, mirror, offline)) > 1:
        raise click.UsageError("choose at most one of --http-url, --mirror and --offline")
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logger = logging.getLogger("releasecache")
    logger.setLevel(level)
    if not any(getattr(h, "_releasecache_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("releasecache: %(levelname)s: %(message)s"))
        handler._releasecache_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    warnings.showwarning = _show_warning
    ctx.obj = Settings(cache_dir=cache_dir.expanduser() if cache_dir else None, bucket=bucket, project=project,
                       endpoint_url=endpoint_url, http_url=http_url, mirror=mirror, offline=offline, signed=signed,
                       profile=profile, layers=[p.expanduser() for p in layers], progress=progress)


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on standard output.")


def _json_mode(ctx: click.Context, as_json: bool) -> Settings:
    settings = _settings(ctx)
    settings.json = as_json
    return settings


# -- manifests ---------------------------------------------------------------------------


def resolve_manifest_name(cache: "CloudCache", spec: str | None) -> str:
    """Turn ``--version`` into a manifest name.

    ``None`` or ``"last"``: the manifest used last in this cache directory, else
    the latest; ``"latest"``: the newest; ``0.4.0`` / ``v0.4.0``: that version;
    anything ending in ``.json``: that manifest name.
    """
    from .manifest import version_from_manifest_name

    if spec is None or spec == "last":
        name = cache.last_used_manifest_file()
        if name is not None:
            return name
        spec = "latest"
    if spec == "latest":
        if cache.remote is None:
            latest = cache.latest_downloaded_manifest_file()
            if latest is None:
                raise E.ManifestNotFoundError(f"the cache {cache.cache_dir} holds no manifest of {cache.project!r}")
            return latest
        return cache.latest_manifest_file()
    if spec.endswith(".json"):
        return spec
    wanted = spec[1:] if spec.startswith("v") else spec
    names = cache.list_manifest_file_names()
    if cache.remote is not None:
        names = sorted(set(names) | set(cache.list_all_downloaded_manifests()))
    for name in names:
        try:
            if str(version_from_manifest_name(name)) == wanted:
                return name
        except E.ManifestError:
            continue
    raise E.ManifestNotFoundError(f"no manifest of version {spec!r} for project {cache.project!r}; "
                                  f"available: {', '.join(names) or 'none'}")


def _load(cache: "CloudCache", spec: str | None) -> "Manifest":
    """Load the manifest ``--version`` names; say so (in command-line terms) if it is not the latest."""
    name = resolve_manifest_name(cache, spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", E.OutdatedManifestWarning)
        manifest = cache.load_manifest(name)
    for w in caught:
        if issubclass(w.category, E.OutdatedManifestWarning):
            latest = cache.latest_manifest_file()
            _say(f"releasecache: note: {name} is not the latest manifest ({latest}); "
                 f"see what changed with: releasecache diff {manifest.version} "
                 f"{latest.rsplit('_v', 1)[-1].removesuffix('.json')}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return manifest


@cli.command()
@click.option("--refresh", is_flag=True, help="List the remote again (ignored offline).")
@json_option
@click.pass_context
def manifests(ctx: click.Context, refresh: bool, as_json: bool) -> None:
    """List the release's manifests, remote and downloaded.

    Marks the latest one and the current one (the manifest used last in this
    cache directory).
    """
    settings = _json_mode(ctx, as_json)
    cache = settings.cache()
    downloaded = cache.list_all_downloaded_manifests()
    remote = None if cache.remote is None else cache.list_manifest_file_names(refresh=refresh)
    from .manifest import sort_manifest_names, version_from_manifest_name

    names = sort_manifest_names(list(set(downloaded) | set(remote or [])))
    latest = names[-1] if names else None
    current = cache.last_used_manifest_file()
    rows = [{"name": n, "version": str(version_from_manifest_name(n)),
             "remote": None if remote is None else n in remote, "downloaded": n in downloaded,
             "latest": n == latest, "current": n == current} for n in names]
    if as_json:
        _emit_json({"project": settings.project, "source": settings.describe_source(), "latest": latest,
                    "current": current, "manifests": rows})
        return
    _say(f"{settings.project} manifests from {settings.describe_source()} (cache {cache.cache_dir}):")
    if not rows:
        click.echo("  (none)")
    for r in rows:
        marks = [m for m, on in (("remote", r["remote"]), ("downloaded", r["downloaded"]),
                                 ("latest", r["latest"]), ("current", r["current"])) if on]
        click.echo(f"  {r['name']:<60} {' '.join(marks)}")


# -- diff ------------------------------------------------------------------------------------


def _manifest_arg(settings: Settings, spec: str, cache_holder: list[Any]) -> "Manifest":
    """A manifest from a local JSON file, or by name/version from the cache or the remote."""
    from .manifest import Manifest

    if os.path.isfile(spec):
        return Manifest.from_path(spec)
    if settings.cache_dir is not None:
        if not cache_holder:
            cache_holder.append(settings.cache())
        cache = cache_holder[0]
        return cache.get_manifest(resolve_manifest_name(cache, spec))
    remote = settings.remote()
    if remote is None:
        raise click.UsageError(f"{spec!r} is not a file; to look a manifest up by name offline, pass --cache-dir")
    name = _resolve_remote_name(remote, settings.project, spec)  # no cache directory: nothing is written
    return Manifest.from_bytes(remote.get_manifest(settings.project, name), name=name)


def _resolve_remote_name(remote: Any, project: str, spec: str) -> str:
    from .manifest import sort_manifest_names, version_from_manifest_name

    names = sort_manifest_names(remote.list_manifests(project))
    if spec == "latest" and names:
        return names[-1]
    if spec in names:
        return spec
    wanted = spec[1:] if spec.startswith("v") else spec
    for name in names:
        if str(version_from_manifest_name(name)) == wanted:
            return name
    raise E.ManifestNotFoundError(f"no manifest {spec!r} for project {project!r}; available: "
                                  f"{', '.join(names) or 'none'}")


@cli.command()
@click.argument("old")
@click.argument("new")
@click.option("--markdown", is_flag=True, help="A Markdown release note instead of text.")
@click.option("--exit-code", is_flag=True, help="Exit with 1 if the manifests differ (like 'git diff --exit-code').")
@json_option
@click.pass_context
def diff(ctx: click.Context, old: str, new: str, markdown: bool, exit_code: bool, as_json: bool) -> None:
    """Compare two manifests: files created, deleted, changed and renamed.

    OLD and NEW are manifest JSON files (no network at all), versions
    (0.4.0) or manifest names, fetched from the cache or the remote.
    """
    from .diff import compare_manifests

    settings = _json_mode(ctx, as_json)
    if markdown and as_json:
        raise click.UsageError("choose one of --json and --markdown")
    holder: list[Any] = []
    result = compare_manifests(_manifest_arg(settings, old, holder), _manifest_arg(settings, new, holder))
    if as_json:
        _emit_json(result.to_dict())
    elif markdown:
        click.echo(result.to_markdown(), nl=False)
    else:
        click.echo(str(result))
    if exit_code and result:
        ctx.exit(EXIT_FILES_FAILED)


# -- download ----------------------------------------------------------------------------


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)`` with 0 <= K < N."""
    if text is None:
        return None
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not K/N (e.g. 3/16)", param_hint="--shard") from None
    if n < 1 or not 0 <= k < n:
        raise click.BadParameter(f"{text!r}: K must be in 0..N-1 (job arrays: --array=0-{max(n - 1, 0)})",
                                 param_hint="--shard")
    return k, n


def _session_file_ids(cache: "CloudCache", ecephys: Iterable[int], behavior: Iterable[int]) -> list[str]:
    ecephys, behavior = list(ecephys), list(behavior)
    if not ecephys and not behavior:
        return []
    from .project import ProjectCache

    project = ProjectCache(cache, skip_version_check=True)
    ids: list[str] = []
    for sid in ecephys:
        ids += [str(f) for f in project.list_data_files(ecephys_session_id=sid)["file_id"]]
    for sid in behavior:
        ids += [str(f) for f in project.list_data_files(behavior_session_id=sid)["file_id"]]
    return list(dict.fromkeys(ids))


def select_entries(cache: "CloudCache", *, metadata_only: bool, metadata: bool, file_ids: Iterable[str],
                   sessions: Iterable[int], behavior_sessions: Iterable[int],
                   shard: tuple[int, int] | None) -> list["FileEntry"]:
    """The manifest entries a ``download`` selects, in manifest order."""
    from .bulk import shard as take_shard

    manifest = cache.manifest
    chosen_ids = list(dict.fromkeys([str(f) for f in file_ids] + _session_file_ids(cache, sessions,
                                                                                 behavior_sessions)))
    entries: list[FileEntry] = list(manifest.metadata_files.values()) if (metadata or metadata_only) else []
    if not metadata_only:
        if chosen_ids:
            entries += [cache.data_entry(f) for f in chosen_ids]
        else:
            entries += list(manifest.data_files.values())
    return take_shard(entries, *shard) if shard else entries


@cli.command()
@click.option("--version", "version", metavar="V",
              help="Manifest version (0.5.0), name, 'latest', or 'last' (default: the one used last here, "
                   "else the latest). Pin it in job arrays.")
@click.option("--metadata-only", is_flag=True, help="Only the metadata CSVs.")
@click.option("--metadata/--no-metadata", default=True, show_default=True,
              help="Include the metadata CSVs with data files.")
@click.option("--file-id", "file_ids", multiple=True, metavar="ID", help="A data file id (repeatable).")
@click.option("--session", "sessions", multiple=True, type=int, metavar="ID",
              help="An ecephys session id: its session NWB and probe LFP files (repeatable).")
@click.option("--behavior-session", "behavior_sessions", multiple=True, type=int, metavar="ID",
              help="A behavior session id: the NWB it is read from (repeatable).")
@click.option("--shard", metavar="K/N",
              help="Only shard K (0-based) of N: job arrays split the files deterministically, with no "
                   "coordination (e.g. --shard $SLURM_ARRAY_TASK_ID/16).")
@click.option("--dry-run", is_flag=True, help="Print the plan (files, sizes, what is cached) and fetch nothing.")
@click.option("--stat/--no-stat", "stat_remote", default=None,
              help="Ask the remote for sizes the manifest lacks (default: on with --dry-run).")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Files downloaded at once (each file also uses parallel ranged requests).")
@click.option("--record", "record_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write a reproducibility lock of the selected files to FILE.")
@json_option
@click.pass_context
def download(ctx: click.Context, version: str | None, metadata_only: bool, metadata: bool, file_ids: tuple[str, ...],
             sessions: tuple[int, ...], behavior_sessions: tuple[int, ...], shard: str | None, dry_run: bool,
             stat_remote: bool | None, jobs: int, record_path: Path | None, as_json: bool) -> None:
    """Download files of a release version into the cache, verified.

    Everything by default; or the metadata only, given sessions or file ids,
    and/or one shard of a job array. Files already cached, or unchanged since
    a version already downloaded, are not downloaded again. Exits with 1 if any
    file failed (each failure is listed).
    """
    from .bulk import plan, prefetch

    settings = _json_mode(ctx, as_json)
    shard_kn = parse_shard(shard)
    if metadata_only and (file_ids or sessions or behavior_sessions):
        raise click.UsageError("--metadata-only does not combine with --file-id / --session")
    cache = settings.cache()
    manifest = _load(cache, version)
    entries = select_entries(cache, metadata_only=metadata_only, metadata=metadata, file_ids=file_ids,
                             sessions=sessions, behavior_sessions=behavior_sessions, shard=shard_kn)
    head = {"manifest": manifest.name, "version": manifest.version,
            "shard": None if shard_kn is None else f"{shard_kn[0]}/{shard_kn[1]}", "files": len(entries)}
    if dry_run:
        the_plan = plan(cache, entries, stat_remote=True if stat_remote is None else stat_remote)
        state = {**{e.relative_path: "fetch" for e in the_plan.to_fetch},
                 **{e.relative_path: "present" for e in the_plan.present},
                 **{e.relative_path: "reusable" for e in the_plan.reusable}}
        rows = [{"path": e.relative_path, "name": e.name, "size": the_plan.sizes.get(e.file_hash),
                 "state": state.get(e.relative_path), "file_hash": e.file_hash} for e in entries]
        if as_json:
            _emit_json({**head, "dry_run": True, "plan": {**the_plan.to_dict(), "entries": rows}})
            return
        _say(f"{manifest.name}" + (f", shard {head['shard']}" if head["shard"] else "") + f": {len(entries)} files")
        for r in rows:
            click.echo(f"  {r['state']:<8} {_human(r['size']):>10}  {r['path']}")
        click.echo(the_plan.summary())
        return
    if cache.remote is None:
        missing = plan(cache, entries).to_fetch
        if missing:
            sample = ", ".join(e.relative_path for e in missing[:5]) + (" …" if len(missing) > 5 else "")
            raise E.OfflineError(f"{len(missing)} of the selected files are not in the cache {cache.cache_dir} "
                                 f"and --offline forbids downloading them: {sample}")
    report = prefetch(cache, entries, max_files=jobs, progress=settings.show_progress,
                      stat_remote=bool(stat_remote))
    lock = None
    if record_path is not None:
        from .record import note_used

        for entry in entries:
            if cache.is_cached(entry) and entry.relative_path not in report.failed:
                note_used(cache, entry)
        lock = cache.write_record(record_path)
    if as_json:
        _emit_json({**head, "dry_run": False, "report": report.to_dict(),
                    "record": str(record_path) if lock is not None else None})
    else:
        click.echo(report.summary())
        if lock is not None:
            _say(f"recorded {len(lock['files'])} files in {record_path}")
    if report.failed:
        ctx.exit(EXIT_FILES_FAILED)


# -- maintenance ------------------------------------------------------------------------


@cli.command()
@click.option("--version", "version", metavar="V",
              help="Check this manifest's files (and report missing ones); default: every blob in the cache.")
@click.option("--full", is_flag=True, help="Hash every file (default: hash only files whose stamp changed).")
@click.option("--require-complete", is_flag=True,
              help="With --version, also fail (exit 1) if some of its files are not downloaded.")
@json_option
@click.pass_context
def verify(ctx: click.Context, version: str | None, full: bool, require_complete: bool, as_json: bool) -> None:
    """Re-check cached files against their hashes; corrupt ones are moved aside.

    A corrupt file downloads again on next use. Exits with 1 if any was corrupt.
    """
    settings = _json_mode(ctx, as_json)
    cache = settings.cache()
    manifest = cache.get_manifest(resolve_manifest_name(cache, version)) if version else None
    report = cache.verify(manifest, mode="full" if full else "fast")
    if as_json:
        _emit_json(report.to_dict())
    else:
        click.echo(report.summary())
    if report.corrupt or (require_complete and report.missing):
        ctx.exit(EXIT_FILES_FAILED)


@cli.command()
@json_option
@click.pass_context
def du(ctx: click.Context, as_json: bool) -> None:
    """Disk usage: bytes per downloaded version, unique and shared, and in total."""
    settings = _json_mode(ctx, as_json)
    usage = settings.cache().disk_usage()
    if as_json:
        _emit_json(usage.to_dict())
    else:
        click.echo(usage.summary())


@cli.command()
@click.option("--keep", multiple=True, metavar="V",
              help="A version or manifest name whose files stay (repeatable; default: the current one).")
@click.option("--dry-run/--delete", "dry_run", default=True, show_default=True,
              help="Only report what would be deleted, or delete it.")
@click.option("--partial-age-days", type=float, default=7.0, show_default=True,
              help="Also remove unfinished downloads untouched this long.")
@json_option
@click.pass_context
def gc(ctx: click.Context, keep: tuple[str, ...], dry_run: bool, partial_age_days: float, as_json: bool) -> None:
    """Free space: delete files no kept version needs (a dry run unless --delete)."""
    settings = _json_mode(ctx, as_json)
    cache = settings.cache()
    kept = [resolve_manifest_name(cache, k) for k in keep] or None
    report = cache.gc(kept, dry_run=dry_run, partial_age_days=partial_age_days)
    if as_json:
        _emit_json(report.to_dict())
    else:
        click.echo(report.summary())


# -- adopt -----------------------------------------------------------------------------------


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--version", "versions", multiple=True, metavar="V",
              help="Check files against this version (repeatable). Default: an AllenSDK cache's version "
                   "folders, or a bucket copy's latest manifest.")
@click.option("--mode", type=click.Choice(["copy", "hardlink"]), default="copy", show_default=True,
              help="copy: leave the source untouched. hardlink: use no extra space (the source files become "
                   "read-only and must not be edited; falls back to copy across filesystems).")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="Files hashed at once.")
@click.option("--dry-run", is_flag=True, help="Hash and report only; change nothing.")
@json_option
@click.pass_context
def adopt(ctx: click.Context, directory: Path, versions: tuple[str, ...], mode: str, jobs: int, dry_run: bool,
          as_json: bool) -> None:
    """Bring files you already have into the cache without downloading them.

    DIRECTORY is an AllenSDK cache directory (with <project>-<version>/
    folders and _downloaded_data.json) or a copy of the bucket (made with
    'aws s3 sync', or a mount) holding <project>/... Every file is hashed and
    adopted only if it matches the manifest. Exits with 1 if some files did
    not match (they will be downloaded when needed).
    """
    from .adopt import adopt as run

    settings = _json_mode(ctx, as_json)
    cache = settings.cache()
    report = run(cache, directory, manifests=list(versions) or None, mode=mode, jobs=jobs, dry_run=dry_run,
                 progress=settings.show_progress)
    if as_json:
        _emit_json(report.to_dict())
    else:
        click.echo(report.summary())
    if report.mismatched:
        ctx.exit(EXIT_FILES_FAILED)


# -- publish ----------------------------------------------------------------------------------


@cli.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--version", "version", required=True, metavar="V", help="The semantic version to publish (0.6.0).")
@click.option("--previous", metavar="NAME",
              help="The manifest to reuse unchanged files from (default: the newest older version on the bucket).")
@click.option("--no-previous", is_flag=True, help="Upload every file.")
@click.option("--region", default="us-west-2", show_default=True, help="Region written into the file URLs.")
@click.option("--url-style", type=click.Choice(["virtual", "path", "s3"]), default="virtual", show_default=True,
              help="Style of the file URLs in the manifest.")
@click.option("--record-size", is_flag=True, help="Also write each file's size into the manifest.")
@click.option("--dry-run", is_flag=True, help="Hash the files and say what would be uploaded; upload nothing.")
@json_option
@click.pass_context
def publish(ctx: click.Context, source: Path, version: str, previous: str | None, no_previous: bool, region: str,
            url_style: str, record_size: bool, dry_run: bool, as_json: bool) -> None:
    """Publish SOURCE as the next version of the release on --bucket.

    SOURCE mirrors the bucket keys: the metadata CSVs in
    <project>/project_metadata/, data files anywhere else below <project>/,
    and optionally file_ids.json mapping data file ids to keys. Only files whose content changed since the previous
    version are uploaded; the manifest records the version ids the server
    assigned. The bucket must have versioning enabled. Requests are signed
    (AWS credentials, --profile).
    """
    from .manifest import Manifest, manifest_name, parse_semver, sort_manifest_names, version_from_manifest_name
    from .publish import _release_files, file_blake2b, publish_version
    from .remote.s3 import S3Remote

    settings = _json_mode(ctx, as_json)
    if settings.http_url or settings.mirror or settings.offline:
        raise click.UsageError("publish writes to S3: --http-url, --mirror and --offline do not apply")
    if previous and no_previous:
        raise click.UsageError("choose one of --previous and --no-previous")
    new_version = parse_semver(version)
    remote = S3Remote(settings.bucket, endpoint_url=settings.endpoint_url, anonymous=False,
                      profile_name=settings.profile)
    project = settings.project
    names = sort_manifest_names(remote.list_manifests(project))
    target = manifest_name(project, version)
    if any(version_from_manifest_name(n) == new_version for n in names):
        raise click.UsageError(f"version {version} of {project} is already published; versions are immutable")
    before: Manifest | None = None
    if not no_previous:
        if previous is None:
            older = [n for n in names if version_from_manifest_name(n) < new_version]
            previous = older[-1] if older else None
        if previous is not None:
            if previous not in names:
                raise E.ManifestNotFoundError(f"no manifest {previous!r} on s3://{settings.bucket}/{project}/manifests/")
            before = Manifest.from_bytes(remote.get_manifest(project, previous), name=previous)
    metadata, data = _release_files(source, project)
    old = {e.key: e for e in before.entries()} if before else {}
    if dry_run:
        changed = [key for key in [*metadata.values(), *data.values()]
                   if key not in old or old[key].file_hash != file_blake2b(source / key)]
        unchanged = sorted(set([*metadata.values(), *data.values()]) - set(changed))
        result = {"manifest": target, "version": version, "previous": previous, "dry_run": True,
                  "upload": sorted(changed), "reuse": unchanged}
    else:
        _check_versioning(remote)
        manifest = publish_version(remote, project, version, source, previous=before, region=region,
                                   url_style=url_style, record_size=record_size)
        uploaded = sorted(e.key for e in manifest.entries()
                          if e.key not in old or old[e.key].version_id != e.version_id)
        reused = sorted(e.key for e in manifest.entries() if e.key not in uploaded)
        if any(not e.version_id for e in manifest.entries()):
            warnings.warn("the bucket returned no version ids: files are not pinned; enable bucket versioning")
        result = {"manifest": manifest.name, "version": version, "previous": previous, "dry_run": False,
                  "upload": uploaded, "reuse": reused,
                  "manifest_key": f"{project}/manifests/{manifest.name}"}
    if as_json:
        _emit_json(result)
    else:
        verb = "would upload" if dry_run else "uploaded"
        click.echo(f"{result['manifest']}: {verb} {len(result['upload'])} files, reused {len(result['reuse'])} "
                   f"unchanged from {previous or 'nothing'}")
        for key in result["upload"]:
            click.echo(f"  {verb.split()[-1]} {key}")


def _check_versioning(remote: Any) -> None:
    try:
        status = remote.client.get_bucket_versioning(Bucket=remote.bucket).get("Status")
    except Exception as exc:  # some S3-compatible servers do not implement it
        log.warning("cannot read the versioning status of %s: %s", remote.bucket, exc)
        return
    if status != "Enabled":
        raise click.UsageError(f"bucket {remote.bucket} does not have versioning enabled (status: {status or 'off'}); "
                               "a release needs version ids to be pinned")


# -- record ------------------------------------------------------------------------------------


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), required=True,
              help="Where to write the lock ('-' for standard output).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A usage log (JSON lines) to turn into a lock; with a COMMAND, the log it appends to.")
@click.option("--present", is_flag=True,
              help="Lock every file of the manifest (--version) that is in the cache now.")
@click.option("--version", "version", metavar="V", help="With --present: the manifest (default: the current one).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def record(ctx: click.Context, output: Path, log_path: Path | None, present: bool, version: str | None,
           command: tuple[str, ...]) -> None:
    """Write a reproducibility lock: the manifest and every file actually used.

    \b
    Three ways:
      releasecache record -o lock.json -- python analysis.py   run it, record what it opened
      releasecache record -o lock.json --log usage.jsonl       convert a usage log
      releasecache record -o lock.json --present --version V   what the cache holds of V

    With a COMMAND, every releasecache cache in it (and in processes it starts)
    appends each file it opens to a usage log (RELEASECACHE_USAGE_LOG); the
    lock lists the manifest (name, version, blake2b) and, per file, its path,
    blake2b, S3 version id and URL. Exits with the command's exit code.
    """
    from .record import USAGE_LOG_ENV, build_lock, entry_record, lock_from_log, manifest_blake2b, write_lock

    settings = _settings(ctx)
    modes = sum((bool(command), present, bool(log_path) and not command))
    if modes != 1:
        raise click.UsageError("give exactly one of: a COMMAND (after --), --log FILE, or --present")
    status = 0
    if present:
        cache = settings.cache()
        manifest = cache.get_manifest(resolve_manifest_name(cache, version))
        rows = [entry_record(manifest, e) for e in manifest.entries() if cache.is_cached(e)]
        lock = build_lock(settings.project, rows, {manifest.name: {"name": manifest.name, "version": manifest.version,
                                                                  "blake2b": manifest_blake2b(cache, manifest)}},
                          current=manifest.name, source=f"cache {cache.cache_dir}")
    elif command:
        tmp = None
        if log_path is None:
            fd, tmp = tempfile.mkstemp(prefix="releasecache-usage-", suffix=".jsonl")
            os.close(fd)
            log_path = Path(tmp)
        env = dict(os.environ, **{USAGE_LOG_ENV: str(log_path.absolute())})
        try:
            try:
                status = subprocess.call(list(command), env=env)
            except OSError as exc:
                raise click.UsageError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
            lock = lock_from_log(log_path, project=settings.project)
        finally:
            if tmp is not None:
                os.unlink(tmp)
    else:
        assert log_path is not None
        if not log_path.is_file():
            raise click.UsageError(f"no usage log {log_path}")
        lock = lock_from_log(log_path, project=settings.project)
    if str(output) == "-":
        _emit_json(lock)
    else:
        write_lock(lock, output)
        manifest_names = ", ".join(m["name"] for m in lock["manifests"]) or "no manifest"
        _say(f"recorded {len(lock['files'])} files of {manifest_names} in {output}")
    ctx.exit(status)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``releasecache`` command."""
    cli.main(args=argv, prog_name="releasecache", auto_envvar_prefix=None)


if __name__ == "__main__":  # pragma: no cover
    main()
