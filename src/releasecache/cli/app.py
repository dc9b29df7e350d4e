"""The command group, its global options, exit codes and output helpers, shared by every command module."""

from __future__ import annotations

import json
import logging
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import errors as E
from ..cache import CloudCache
from ..config import (
    DEFAULT_BUCKET,
    DEFAULT_PROJECT,
    ENV_BUCKET,
    ENV_CACHE_DIR,
    ENV_ENDPOINT_URL,
    ENV_HTTP_URL,
    ENV_LAYERS,
    ENV_MAX_SIZE,
    ENV_MIRROR,
    ENV_OFFLINE,
    ENV_PROFILE,
    ENV_PROJECT,
    ENV_SIGNED,
)
from ..manifest import resolve_manifest_spec
from ..remote import Remote, make_remote
from ..transfer import TransferConfig
from ..utils import human_bytes

if TYPE_CHECKING:
    from ..manifest import Manifest

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
    (E.InvalidArgumentError, EXIT_USAGE),
    (E.UnknownProbeError, EXIT_USAGE),
    (E.VersionExistsError, EXIT_USAGE),
    (E.VersioningDisabledError, EXIT_USAGE),
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
    max_size: str | None = None
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

    def remote(self) -> Remote | None:
        """The remote the options name, or None when offline."""
        if self.offline:
            return None
        return make_remote(bucket=self.bucket, endpoint_url=self.endpoint_url, anonymous=not self.signed,
                           profile=self.profile, http_url=self.http_url, mirror=self.mirror)

    def cache(self, **kwargs: Any) -> "CloudCache":
        """A :class:`CloudCache` on ``--cache-dir`` fed from the chosen source."""
        root = self.require_cache_dir()
        config = TransferConfig()
        remote = self.remote()
        options: dict[str, Any] = {"transfer_config": config, "progress": self.show_progress}
        if self.layers:
            options["layers"] = list(self.layers)
        if self.max_size:
            options["max_size"] = self.max_size
        options.update(kwargs)
        return CloudCache(root, remote, self.project, **options)


def settings_of(ctx: click.Context) -> Settings:
    """The global options of this invocation."""
    return ctx.find_object(Settings)  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    """Print one JSON document on standard output."""
    click.echo(json.dumps(data, indent=2, default=str))


def say(message: str) -> None:
    """A message for people (standard error, so standard output stays machine-readable)."""
    click.echo(message, err=True)


def human(n: int | float | None) -> str:
    """Bytes for people; ``?`` if unknown."""
    return "?" if n is None else human_bytes(n)


class ReleaseCacheGroup(click.Group):
    """Maps library exceptions to the documented exit codes and messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:
            report_interrupted(ctx, exc)
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
            emit_json({"error": {"type": type(exc).__name__, "message": message, "exit_code": code}})
        say(f"releasecache: error: {message}")
        ctx.exit(code)


def report_interrupted(ctx: click.Context, exc: KeyboardInterrupt, **document: Any) -> NoReturn:
    """Ctrl-C: one line saying what was kept; with --json still one document (with ``document``); exit 130."""
    message = str(exc) if hasattr(exc, "partial_kept") else "stopped"
    settings = ctx.find_object(Settings)
    if settings is not None and settings.json:
        report = getattr(exc, "report", None)
        emit_json({**document, "interrupted": True,
                   "partial_downloads_kept": getattr(exc, "partial_kept", 0),
                   "report": report.to_dict() if report is not None else None,
                   "error": {"type": "Interrupted", "message": message, "exit_code": EXIT_INTERRUPTED}})
    say(f"releasecache: {message}")
    ctx.exit(EXIT_INTERRUPTED)


def show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    text = str(message).strip().replace("\n", "\n  ")
    click.echo(f"releasecache: warning: {text}", err=True)


# -- the group -----------------------------------------------------------------------------


@click.group(cls=ReleaseCacheGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar=ENV_CACHE_DIR,
              help="The cache directory (created if missing; may be shared by many processes). "
                   "[env: RELEASECACHE_CACHE_DIR]")
@click.option("--bucket", default=DEFAULT_BUCKET, show_default=True, envvar=ENV_BUCKET,
              help="S3 bucket of the release. [env: RELEASECACHE_BUCKET]")
@click.option("--project", default=DEFAULT_PROJECT, show_default=True, envvar=ENV_PROJECT,
              help="Project name: the key prefix in the bucket. [env: RELEASECACHE_PROJECT]")
@click.option("--endpoint-url", envvar=ENV_ENDPOINT_URL, metavar="URL",
              help="A custom S3 endpoint (a mirror, MinIO, a test server). [env: RELEASECACHE_ENDPOINT_URL]")
@click.option("--http-url", envvar=ENV_HTTP_URL, metavar="URL",
              help="Fetch over plain HTTP(S) from this bucket-root URL instead of the S3 API. "
                   "[env: RELEASECACHE_HTTP_URL]")
@click.option("--mirror", type=click.Path(exists=True, file_okay=False, path_type=Path), envvar=ENV_MIRROR,
              help="Fetch from a local copy of the bucket (a mount or an 'aws s3 sync'). [env: RELEASECACHE_MIRROR]")
@click.option("--offline", is_flag=True, envvar=ENV_OFFLINE,
              help="Use no network: serve only what the cache holds. [env: RELEASECACHE_OFFLINE]")
@click.option("--signed", is_flag=True, envvar=ENV_SIGNED,
              help="Sign S3 requests with your AWS credentials (default: anonymous). [env: RELEASECACHE_SIGNED]")
@click.option("--profile", envvar=ENV_PROFILE, metavar="NAME",
              help="AWS profile for signed requests and for publish. [env: RELEASECACHE_PROFILE]")
@click.option("--layer", "layers", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              envvar=ENV_LAYERS,
              help="A read-only cache directory consulted before downloading (repeatable; e.g. a site-wide "
                   "copy). [env: RELEASECACHE_LAYERS, separated by ':']")
@click.option("--max-size", envvar=ENV_MAX_SIZE, metavar="SIZE",
              help="A size budget for the cache's blobs (e.g. 400GB): downloads first evict least-recently-used "
                   "files of versions that are not pinned (see 'pin', 'evict'). [env: RELEASECACHE_MAX_SIZE]")
@click.option("--progress/--no-progress", default=None,
              help="Progress bars on standard error (default: only when it is a terminal).")
@click.option("-v", "--verbose", count=True, help="More log messages (-vv for debugging).")
@click.version_option(package_name="releasecache", prog_name="releasecache")
@click.pass_context
def cli(ctx: click.Context, cache_dir: Path | None, bucket: str, project: str, endpoint_url: str | None,
        http_url: str | None, mirror: Path | None, offline: bool, signed: bool, profile: str | None,
        layers: tuple[Path, ...], max_size: str | None, progress: bool | None, verbose: int) -> None:
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
    warnings.showwarning = show_warning
    ctx.obj = Settings(cache_dir=cache_dir.expanduser() if cache_dir else None, bucket=bucket, project=project,
                       endpoint_url=endpoint_url, http_url=http_url, mirror=mirror, offline=offline, signed=signed,
                       profile=profile, layers=[p.expanduser() for p in layers], progress=progress,
                       max_size=max_size)


#: The ``--json`` flag every command takes.
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on standard output.")


def json_mode(ctx: click.Context, as_json: bool) -> Settings:
    """The global options, with ``--json`` of this command recorded."""
    settings = settings_of(ctx)
    settings.json = as_json
    return settings


# -- manifests -------------------------------------------------------------------------


def resolve_manifest_name(cache: CloudCache, spec: str | None) -> str:
    """Turn ``--version`` into a manifest name.

    ``None`` or ``"last"``: the manifest used last in this cache directory, else
    the latest; ``"latest"``: the newest; ``0.4.0`` / ``v0.4.0``: that version;
    anything ending in ``.json``: that manifest name.
    """
    return resolve_manifest_spec(spec, names=cache.known_manifest_names, latest=cache.latest_known_manifest,
                                 last=cache.last_used_manifest_file, project=cache.project)


def load_manifest(cache: "CloudCache", spec: str | None) -> "Manifest":
    """Load the manifest ``--version`` names; say so (in command-line terms) if it is not the latest."""
    name = resolve_manifest_name(cache, spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", E.OutdatedManifestWarning)
        manifest = cache.load_manifest(name)
    for w in caught:
        if issubclass(w.category, E.OutdatedManifestWarning):
            latest = cache.latest_manifest_file()
            say(f"releasecache: note: {name} is not the latest manifest ({latest}); "
                 f"see what changed with: releasecache diff {manifest.version} "
                 f"{latest.rsplit('_v', 1)[-1].removesuffix('.json')}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return manifest
