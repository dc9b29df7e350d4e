"""``download``: fetch a version's files (all, metadata, sessions, file ids, one shard) into the cache."""

from __future__ import annotations

import errno

from pathlib import Path
from typing import Iterable

import click

from .. import errors as E
from ..cache import CloudCache
from ..cache.prefetch import plan, prefetch, shard as take_shard
from ..cache.record import note_used
from ..cache.reproduce import check_lock, fill_from_lock, read_lock
from ..manifest import FileEntry
from .app import (EXIT_FILES_FAILED, Settings, cli, emit_json, human, json_mode, json_option, load_manifest,
                  report_interrupted, say)


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
    from ..vbn.project import ProjectCache  # imported here: it pulls in pandas, which only --session needs

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
              help="Ask the remote for sizes that neither the manifest nor the cache knows, so the plan and "
                   "the progress bar show bytes, a percentage and an ETA (default: on; sizes are remembered).")
@click.option("-j", "--jobs", default=16, show_default=True, type=click.IntRange(1, 256),
              help="Files downloaded at once (each file also uses parallel ranged requests).")
@click.option("--record", "from_record", type=click.Path(dir_okay=False, path_type=Path), metavar="RECORD",
              help="Download exactly the files a reproducibility record (lock) lists, each checked against its "
                   "manifest and the recorded blake2b, and nothing else (see 'record check').")
@click.option("--write-record", "record_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write a reproducibility lock of the selected files to FILE.")
@json_option
@click.pass_context
def download(ctx: click.Context, version: str | None, metadata_only: bool, metadata: bool, file_ids: tuple[str, ...],
             sessions: tuple[int, ...], behavior_sessions: tuple[int, ...], shard: str | None, dry_run: bool,
             stat_remote: bool | None, jobs: int, from_record: Path | None, record_path: Path | None,
             as_json: bool) -> None:
    """Download files of a release version into the cache, verified.

    Everything by default; or the metadata only, given sessions or file ids,
    and/or one shard of a job array. Files already cached, or unchanged since
    a version already downloaded, are not downloaded again. Exits with 1 if any
    file failed (each failure is listed).
    """
    settings = json_mode(ctx, as_json)
    if from_record is not None:
        if version or metadata_only or file_ids or sessions or behavior_sessions or shard or record_path or dry_run:
            raise click.UsageError("--record RECORD downloads exactly the recorded files: it takes no selection "
                                   "(to write a lock of a selection, use --write-record FILE)")
        _download_record(ctx, settings, from_record)
        return
    shard_kn = parse_shard(shard)
    if metadata_only and (file_ids or sessions or behavior_sessions):
        raise click.UsageError("--metadata-only does not combine with --file-id / --session")
    cache = settings.cache()
    manifest = load_manifest(cache, version)
    entries = select_entries(cache, metadata_only=metadata_only, metadata=metadata, file_ids=file_ids,
                             sessions=sessions, behavior_sessions=behavior_sessions, shard=shard_kn)
    head = {"manifest": manifest.name, "version": manifest.version,
            "shard": None if shard_kn is None else f"{shard_kn[0]}/{shard_kn[1]}", "files": len(entries)}
    if dry_run:
        the_plan = plan(cache, entries, stat_remote=stat_remote)
        state = {**{e.relative_path: "fetch" for e in the_plan.to_fetch},
                 **{e.relative_path: "present" for e in the_plan.present},
                 **{e.relative_path: "reusable" for e in the_plan.reusable}}
        rows = [{"path": e.relative_path, "name": e.name, "size": the_plan.sizes.get(e.file_hash),
                 "state": state.get(e.relative_path), "file_hash": e.file_hash} for e in entries]
        if as_json:
            emit_json({**head, "dry_run": True, "plan": {**the_plan.to_dict(), "entries": rows}})
            return
        say(f"{manifest.name}" + (f", shard {head['shard']}" if head["shard"] else "") + f": {len(entries)} files")
        for r in rows:
            click.echo(f"  {r['state']:<8} {human(r['size']):>10}  {r['path']}")
        click.echo(the_plan.summary())
        return
    if cache.remote is None:
        missing = plan(cache, entries).to_fetch
        if missing:
            sample = ", ".join(e.relative_path for e in missing[:5]) + (" …" if len(missing) > 5 else "")
            raise E.OfflineError(f"{len(missing)} of the selected files are not in the cache {cache.cache_dir} "
                                 f"and --offline forbids downloading them: {sample}")
    elif cache.store.read_only:
        missing = plan(cache, entries, stat_remote=False).to_fetch
        if missing:
            sample = ", ".join(e.relative_path for e in missing[:5]) + (" …" if len(missing) > 5 else "")
            raise E.ReadOnlyCacheError(
                errno.EROFS, f"{len(missing)} of the selected files are not in the cache {cache.cache_dir}, which is "
                f"read-only for you (another user's cache?), so they cannot be downloaded: {sample}; use it as a "
                "--layer of a cache of your own instead")
    try:
        report = prefetch(cache, entries, max_files=jobs, progress=settings.show_progress,
                          stat_remote=stat_remote)
    except KeyboardInterrupt as stop:
        report_interrupted(ctx, stop, **head, dry_run=False)
    lock = None
    if record_path is not None:
        for entry in entries:
            if cache.is_cached(entry) and entry.relative_path not in report.failed:
                note_used(cache, entry)
        lock = cache.write_record(record_path)
    if as_json:
        emit_json({**head, "dry_run": False, "report": report.to_dict(),
                    "record": str(record_path) if lock is not None else None})
    else:
        click.echo(report.summary())
        if lock is not None:
            say(f"recorded {len(lock['files'])} files in {record_path}")
    if report.failed:
        ctx.exit(EXIT_FILES_FAILED)


def _download_record(ctx: click.Context, settings: Settings, path: Path) -> None:
    """Fill the cache with exactly the files of a record, then check them against it."""
    lock = read_lock(path)
    cache = settings.cache()
    paths = fill_from_lock(cache, lock, progress=settings.show_progress)
    check = check_lock(cache, lock, server=False)
    if settings.json:
        emit_json({"record": str(path), "files": [str(p) for p in paths], "check": check.to_dict()})
    else:
        click.echo(f"{len(paths)} recorded files present and verified in {cache.cache_dir}")
        click.echo(check.summary())
    if not check.ok:
        ctx.exit(EXIT_FILES_FAILED)
