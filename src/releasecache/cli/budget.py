"""``pin``, ``unpin`` and ``evict``: keep the cache within a size budget without losing a pinned version."""

from __future__ import annotations

import click

from .app import EXIT_STORAGE, cli, emit_json, json_mode, json_option, say


@cli.command()
@click.argument("versions", nargs=-1, metavar="[V]...")
@json_option
@click.pass_context
def pin(ctx: click.Context, versions: tuple[str, ...], as_json: bool) -> None:
    """Pin versions (0.5.0 or manifest names): the size budget never evicts their files.

    Without V, list the pinned manifests (the explicit pins plus the current one).
    """
    settings = json_mode(ctx, as_json)
    cache = settings.cache()
    names = [cache.pin(v) for v in versions]
    pinned = cache.pinned_manifests()
    if as_json:
        emit_json({"pinned": pinned, "added": names})
        return
    for name in names:
        say(f"pinned {name}")
    for name in pinned:
        click.echo(name)


@cli.command()
@click.argument("versions", nargs=-1, required=True, metavar="V...")
@click.pass_context
def unpin(ctx: click.Context, versions: tuple[str, ...]) -> None:
    """Remove pins (the current manifest stays pinned while it is current)."""
    cache = json_mode(ctx, False).cache()
    for version in versions:
        say(f"unpinned {version}" if cache.unpin(version) else f"{version} was not pinned")


@cli.command()
@click.option("--max-size", "limit", metavar="SIZE",
              help="The budget to meet (default: the global --max-size / RELEASECACHE_MAX_SIZE).")
@click.option("--dry-run/--delete", "dry_run", default=True, show_default=True,
              help="Only report what would be evicted, or evict it.")
@json_option
@click.pass_context
def evict(ctx: click.Context, limit: str | None, dry_run: bool, as_json: bool) -> None:
    """Evict least-recently-used files until the cache fits its size budget (a dry run unless --delete).

    Never evicts a file of a pinned manifest (see 'pin'; the current one is
    pinned), a file whose lock another process holds or one being read; a
    file's view links go with it. Exits with 6 if the budget cannot be met.
    """
    settings = json_mode(ctx, as_json)
    cache = settings.cache()
    report = cache.evict(limit, dry_run=dry_run)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.summary())
    if not report.fits:
        ctx.exit(EXIT_STORAGE)
