"""``manifests`` and ``diff``: list a release's versions, compare two."""

from __future__ import annotations

import os

from typing import Any

import click

from .. import errors as E
from ..audit import AuditDiff
from ..manifest import Manifest, compare_manifests, sort_manifest_names, version_from_manifest_name
from .app import EXIT_FILES_FAILED, Settings, cli, emit_json, json_mode, json_option, resolve_manifest_name, say


@cli.command()
@click.option("--refresh", is_flag=True, help="List the remote again (ignored offline).")
@click.option("--check", is_flag=True,
              help="Also look for publisher mistakes: a version id listed with two hashes, a version published "
                   "twice with different content, a saved manifest the server now serves changed. Exits with 1 "
                   "if one is found.")
@json_option
@click.pass_context
def manifests(ctx: click.Context, refresh: bool, check: bool, as_json: bool) -> None:
    """List the release's manifests, remote and downloaded.

    Marks the latest one and the current one (the manifest used last in this
    cache directory).
    """
    settings = json_mode(ctx, as_json)
    cache = settings.cache()
    problems = cache.check_release() if check else []  # each is also shown as a warning
    downloaded = cache.list_all_downloaded_manifests()
    remote = None if cache.remote is None else cache.list_manifest_file_names(refresh=refresh)
    names = sort_manifest_names(list(set(downloaded) | set(remote or [])))
    latest = names[-1] if names else None
    current = cache.last_used_manifest_file()
    rows = [{"name": n, "version": str(version_from_manifest_name(n)),
             "remote": None if remote is None else n in remote, "downloaded": n in downloaded,
             "latest": n == latest, "current": n == current} for n in names]
    if as_json:
        emit_json({"project": settings.project, "source": settings.describe_source(), "latest": latest,
                    "current": current, "manifests": rows, **({"problems": problems} if check else {})})
        if problems:
            ctx.exit(EXIT_FILES_FAILED)
        return
    say(f"{settings.project} manifests from {settings.describe_source()} (cache {cache.cache_dir}):")
    if not rows:
        click.echo("  (none)")
    for r in rows:
        marks = [m for m, on in (("remote", r["remote"]), ("downloaded", r["downloaded"]),
                                 ("latest", r["latest"]), ("current", r["current"])) if on]
        click.echo(f"  {r['name']:<60} {' '.join(marks)}")
    if check:
        click.echo(f"{len(problems)} publisher mistakes found" if problems else "no publisher mistakes found")
        if problems:
            ctx.exit(EXIT_FILES_FAILED)


def _manifest_arg(settings: Settings, spec: str, cache_holder: list[Any]) -> "Manifest":
    """A manifest from a local JSON file, or by name/version from the cache or the remote."""
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
@click.option("--rows", "rows", is_flag=False, flag_value="*", default=None, metavar="[TABLE]",
              help="Also diff the changed metadata CSVs row by row, keyed by their id column: every changed "
                   "table, or only TABLE (units, or a comma-separated list). Needs --cache-dir; CSVs not in the "
                   "cache are fetched into it (said first, with their sizes).")
@click.option("--file", "files", multiple=True, metavar="PATH",
              help="Also diff this changed NWB data file group by group and dataset by dataset (its path in "
                   "the release, file id or file name; repeatable). Needs --cache-dir.")
@click.option("--stream", is_flag=True,
              help="With --file: read both versions from the server at their pinned version ids instead of "
                   "downloading them (writes nothing).")
@click.option("--nwb-path", "nwb_paths", multiple=True, metavar="NWB_PATH",
              help="With --file: compare only this NWB path and what lies below it (e.g. units; repeatable).")
@click.option("--values/--no-values", default=True, show_default=True,
              help="With --file: also compare dataset values (by chunked hashing); --no-values compares only "
                   "groups, datasets, shapes, dtypes and attributes, which reads only the HDF5 metadata.")
@json_option
@click.pass_context
def diff(ctx: click.Context, old: str, new: str, markdown: bool, exit_code: bool, rows: str | None,
         files: tuple[str, ...], stream: bool, nwb_paths: tuple[str, ...], values: bool, as_json: bool) -> None:
    """Compare two manifests: files created, deleted, changed and renamed.

    OLD and NEW are manifest JSON files (no network at all), versions
    (0.4.0) or manifest names, fetched from the cache or the remote. With
    --rows and --file, what changed inside the files is shown under each.
    """
    settings = json_mode(ctx, as_json)
    if markdown and as_json:
        raise click.UsageError("choose one of --json and --markdown")
    if (stream or nwb_paths or not values) and not files:
        raise click.UsageError("--stream, --nwb-path and --no-values apply to --file")
    holder: list[Any] = []
    if (rows is not None or files) and settings.cache_dir is None:
        raise click.UsageError("--rows and --file need --cache-dir (the files' two versions are read there)")
    a, b = _manifest_arg(settings, old, holder), _manifest_arg(settings, new, holder)
    result = compare_manifests(a, b)
    if rows is not None or files:
        result = _audit(settings, holder, AuditDiff(result, _cache(settings, holder), a, b), rows, files, stream,
                        nwb_paths, values)
    if as_json:
        emit_json(result.to_dict())
    elif markdown:
        click.echo(result.to_markdown(), nl=False)
    else:
        click.echo(str(result), nl=not result.endswith("\n"))  # AllenSDK's text ends with a newline already
    if exit_code and not result.equivalent:
        ctx.exit(EXIT_FILES_FAILED)


def _cache(settings: Settings, holder: list[Any]) -> Any:
    if not holder:
        holder.append(settings.cache())
    return holder[0]


def _audit(settings: Settings, holder: list[Any], audit: AuditDiff, rows: str | None, files: tuple[str, ...],
           stream: bool, nwb_paths: tuple[str, ...], values: bool = True) -> AuditDiff:
    """The manifest diff with the requested row and NWB diffs filled in."""
    cache = audit.cache
    tables: list[str] | bool = False
    if rows == "*":
        tables = True
    elif rows:
        tables = [t.strip() for t in rows.split(",") if t.strip()]
    plan = audit.fetch_plan(tables=tables, files=[] if stream else list(files))
    if plan and cache.remote is None:
        raise E.OfflineError(f"the content diff needs files this offline cache does not hold: "
                             f"{', '.join(f.path + ' (' + f.version + ')' for f in plan.fetches)}")
    if plan:
        say(f"releasecache: {plan.summary()}")
    audit.announce = lambda message: None  # said above, once for all files
    audit.compute(tables=tables, files=[])
    for path in files:
        audit.file_diff(path, stream=stream, paths=list(nwb_paths) or None, compare_values=values)
    return audit
