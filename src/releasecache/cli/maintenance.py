"""``verify``, ``du`` and ``gc``: look after a cache directory."""

from __future__ import annotations

import click

from ..config import DEFAULT_PARTIAL_AGE_DAYS
from .app import EXIT_FILES_FAILED, cli, emit_json, json_mode, json_option, resolve_manifest_name


class ByteSize(click.ParamType):
    """A number of bytes: ``500000``, ``200M``, ``10G`` (powers of 1024)."""

    name = "size"
    _UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in self._UNITS else ""
        try:
            number = float(text[: len(text) - len(unit)])
        except ValueError:
            self.fail(f"{value!r} is not a size (for example 500M or 10G)", param, ctx)
        if number < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return int(number * self._UNITS[unit])


@cli.command()
@click.option("--version", "version", metavar="V",
              help="Check this manifest's files (and report missing ones); default: every blob in the cache.")
@click.option("--full", is_flag=True,
              help="Hash every file (default: hash only files whose stamp changed). Incremental: the files "
                   "verified longest ago go first, and a stopped run continues where it stopped.")
@click.option("--max-seconds", type=float, default=None, metavar="S",
              help="With --full: stop after about S seconds; the next run continues the same pass.")
@click.option("--max-bytes", type=ByteSize(), default=None, metavar="SIZE",
              help="With --full: hash at most about SIZE (e.g. 200G) in this run; the next run continues.")
@click.option("--restart", is_flag=True, help="With --full: start a new pass instead of continuing one.")
@click.option("--fix", is_flag=True,
              help="Repair file modes and groups that lock the cache's group out (the ones you own; root: all).")
@click.option("--require-complete", is_flag=True,
              help="With --version, also fail (exit 1) if some of its files are not downloaded.")
@json_option
@click.pass_context
def verify(ctx: click.Context, version: str | None, full: bool, max_seconds: float | None, max_bytes: int | None,
           restart: bool, fix: bool, require_complete: bool, as_json: bool) -> None:
    """Re-check cached files against their hashes, and saved manifests; corrupt files are moved aside.

    A corrupt file downloads again on next use; a saved manifest that no longer
    parses is fetched again (unless --offline). Also reports files whose modes
    would lock other members of the cache directory's group out (--fix repairs
    them). Exits with 1 if any file was corrupt, a damaged manifest could not be
    repaired, or a file locks the group out.
    """
    settings = json_mode(ctx, as_json)
    cache = settings.cache()
    manifest = cache.get_manifest(resolve_manifest_name(cache, version)) if version else None
    report = cache.verify(manifest, mode="full" if full else "fast", max_seconds=max_seconds, max_bytes=max_bytes,
                          resume=not restart, fix_permissions=fix)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.summary())
    unrepaired = [d for d in report.damaged_manifests if not d["repaired"]]
    if report.corrupt or unrepaired or report.permissions or (require_complete and report.missing):
        ctx.exit(EXIT_FILES_FAILED)


@cli.command()
@json_option
@click.pass_context
def du(ctx: click.Context, as_json: bool) -> None:
    """Disk usage: bytes per downloaded version, unique and shared, and in total."""
    settings = json_mode(ctx, as_json)
    usage = settings.cache().disk_usage()
    if as_json:
        emit_json(usage.to_dict())
    else:
        click.echo(usage.summary())


@cli.command()
@click.option("--keep", multiple=True, metavar="V",
              help="A version or manifest name whose files stay (repeatable; default: the current one).")
@click.option("--dry-run/--delete", "dry_run", default=True, show_default=True,
              help="Only report what would be deleted, or delete it.")
@click.option("--partial-age-days", type=float, default=DEFAULT_PARTIAL_AGE_DAYS, show_default=True,
              help="Also remove unfinished downloads untouched this long.")
@click.option("--window-days", type=float, default=None, metavar="DAYS",
              help="Also keep every version anybody used in this cache within DAYS "
                   "(default: $RELEASECACHE_GC_WINDOW_DAYS, else 30; 0 keeps only --keep).")
@json_option
@click.pass_context
def gc(ctx: click.Context, keep: tuple[str, ...], dry_run: bool, partial_age_days: float,
       window_days: float | None, as_json: bool) -> None:
    """Free space: delete files no kept or recently used version needs (a dry run unless --delete).

    The report says, per downloaded version, whether it stays and why.
    """
    settings = json_mode(ctx, as_json)
    cache = settings.cache()
    kept = [resolve_manifest_name(cache, k) for k in keep] or None
    report = cache.gc(kept, dry_run=dry_run, partial_age_days=partial_age_days, window_days=window_days)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.summary())
