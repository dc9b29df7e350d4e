"""``publish``: upload a new version of a release (the decisions live in :mod:`releasecache.cache.publish_plan`)."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import DEFAULT_REGION
from ..cache.publish_plan import plan_publish, run_publish
from ..remote import make_remote
from .app import cli, emit_json, json_mode, json_option


@cli.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--version", "version", required=True, metavar="V", help="The semantic version to publish (0.6.0).")
@click.option("--previous", metavar="NAME",
              help="The manifest to reuse unchanged files from (default: the newest older version on the bucket).")
@click.option("--no-previous", is_flag=True, help="Upload every file.")
@click.option("--region", default=DEFAULT_REGION, show_default=True, help="Region written into the file URLs.")
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
    settings = json_mode(ctx, as_json)
    if settings.http_url or settings.mirror or settings.offline:
        raise click.UsageError("publish writes to S3: --http-url, --mirror and --offline do not apply")
    if previous and no_previous:
        raise click.UsageError("choose one of --previous and --no-previous")
    remote = make_remote(bucket=settings.bucket, endpoint_url=settings.endpoint_url, anonymous=False,
                         profile=settings.profile)
    the_plan = plan_publish(remote, settings.project, version, source, previous=previous, no_previous=no_previous)
    if dry_run:
        result = {"manifest": the_plan.target, "version": version, "previous": the_plan.previous, "dry_run": True,
                  "upload": the_plan.changed_keys(), "reuse": the_plan.unchanged_keys()}
    else:
        result = {"version": version, "previous": the_plan.previous, "dry_run": False,
                  **run_publish(remote, the_plan, region=region, url_style=url_style, record_size=record_size)}
    if as_json:
        emit_json(result)
    else:
        verb = "would upload" if dry_run else "uploaded"
        click.echo(f"{result['manifest']}: {verb} {len(result['upload'])} files, reused {len(result['reuse'])} "
                   f"unchanged from {the_plan.previous or 'nothing'}")
        for key in result["upload"]:
            click.echo(f"  {verb.split()[-1]} {key}")
