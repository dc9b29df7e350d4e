"""``verify``, ``du`` and ``gc``: look after a cache directory."""

from __future__ import annotations

import click

from ..config import DEFAULT_PARTIAL_AGE_DAYS
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
    """Re-check cached files against their hashes, and saved manifests; corrupt files are moved aside.

    A corrupt file downloads again on next use; a saved manifest that no longer
    parses is fetched again (unless --offline). Exits with 1 if any file was
    corrupt or a damaged manifest could not be repaired.
    """
    settings = json_mode(ctx, as_json)
    cache = settings.cache()
    manifest = cache.get_manifest(resolve_manifest_name(cache, version)) if version else None
    report = cache.verify(manifest, mode="full" if full else "fast")
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.summary())
    unrepaired = [d for d in report.damaged_manifests if not d["repaired"]]
    if report.corrupt or unrepaired or (require_complete and report.missing):
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
@json_option
@click.pass_context
def gc(ctx: click.Context, keep: tuple[str, ...], dry_run: bool, partial_age_days: float, as_json: bool) -> None:
    """Free space: delete files no kept version needs (a dry run unless --delete)."""
    settings = json_mode(ctx, as_json)
    cache = settings.cache()
    kept = [resolve_manifest_name(cache, k) for k in keep] or None
    report = cache.gc(kept, dry_run=dry_run, partial_age_days=partial_age_days)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.summary())
