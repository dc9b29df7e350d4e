"""``record``: a reproducibility lock of the files a command, a log or a cache used; ``record check``."""

from __future__ import annotations

from pathlib import Path

import click

import os
import subprocess
import tempfile

from ..cache.record import (
    USAGE_LOG_ENV,
    build_lock,
    entry_record,
    lock_from_log,
    manifest_blake2b,
    write_lock,
)
from ..cache.reproduce import check_lock, read_lock
from .app import (
    EXIT_FILES_FAILED,
    EXIT_INTEGRITY,
    cli,
    emit_json,
    json_mode,
    json_option,
    resolve_manifest_name,
    say,
    settings_of,
)


class _RecordGroup(click.Group):
    """``record check RECORD``; any other command line is ``record write ...`` (the original form)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["write", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_RecordGroup)
def record() -> None:
    """Reproducibility records (locks): write one (the default), or check one.

    \b
      releasecache record -o lock.json -- python analysis.py   same as 'record write ...'
      releasecache record check lock.json                      does it still reproduce?
      releasecache --cache-dir NEW download --record lock.json  get exactly those files elsewhere
    """


@record.command("write", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), required=True,
              help="Where to write the lock ('-' for standard output).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A usage log (JSON lines) to turn into a lock; with a COMMAND, the log it appends to.")
@click.option("--present", is_flag=True,
              help="Lock every file of the manifest (--version) that is in the cache now.")
@click.option("--version", "version", metavar="V", help="With --present: the manifest (default: the current one).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def write(ctx: click.Context, output: Path, log_path: Path | None, present: bool, version: str | None,
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
    settings = settings_of(ctx)
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
        emit_json(lock)
    else:
        write_lock(lock, output)
        manifest_names = ", ".join(m["name"] for m in lock["manifests"]) or "no manifest"
        say(f"recorded {len(lock['files'])} files of {manifest_names} in {output}")
    ctx.exit(status)


@record.command("check")
@click.argument("record_file", metavar="RECORD", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--full", is_flag=True, help="Re-hash every cached file (default: trust the store, whose blobs are "
                                           "named by their verified hash).")
@click.option("--server/--no-server", default=True, show_default=True,
              help="Also ask the server whether every recorded version id is still retrievable (one HEAD per "
                   "file) and compare the manifests' bytes there. Off with --offline.")
@json_option
@click.pass_context
def check(ctx: click.Context, record_file: Path, full: bool, server: bool, as_json: bool) -> None:
    """Check that RECORD still reproduces: its files in the cache, its version ids on the server.

    Prints what is missing. Exit codes: 0 every file is in the cache with the
    recorded blake2b and (unless --no-server) still retrievable at the recorded
    version id; 1 some file is missing, corrupt or gone from the server; 3 a
    manifest's bytes differ from the recorded blake2b, or RECORD is not a lock.
    """
    settings = json_mode(ctx, as_json)
    lock = read_lock(record_file)
    result = check_lock(settings.cache(), lock, server=server, full=full)
    if as_json:
        emit_json({"record": str(record_file), **result.to_dict()})
    else:
        click.echo(result.summary())
    if result.manifest_mismatches:
        ctx.exit(EXIT_INTEGRITY)
    if not result.ok:
        ctx.exit(EXIT_FILES_FAILED)
