"""``adopt``: bring files already on disk into the cache, after hashing them."""

from __future__ import annotations

from pathlib import Path

import click

from ..cache.adopt import adopt as run
from .app import EXIT_FILES_FAILED, cli, emit_json, json_mode, json_option


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
    settings = json_mode(ctx, as_json)
    cache = settings.cache()
    report = run(cache, directory, manifests=list(versions) or None, mode=mode, jobs=jobs, dry_run=dry_run,
                 progress=settings.show_progress)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.summary())
    if report.mismatched:
        ctx.exit(EXIT_FILES_FAILED)
