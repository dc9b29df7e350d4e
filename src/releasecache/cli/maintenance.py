"""``verify``, ``du`` and ``gc``: look after a cache directory."""

from __future__ import annotations


import click

from .app import EXIT_FILES_FAILED, cli, emit_json, json_mode, json_option, resolve_manifest_name


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
    settings = json_mode(ctx, as_json)
    cache = settings.cache()
    manifest = cache.get_manifest(resolve_manifest_name(cache, version)) if version else None
    report = cache.verify(manifest, mode="full" if full else "fast")
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.summary())
    if report.corrupt or (require_complete and report.missing):
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
@click.option("--partial-age-days", type=float, default=7.0, show_default=True,
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
