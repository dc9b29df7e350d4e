"""The audit on the command line, against the loopback S3 server: diff --rows/--file, record check,
download --record, pin/evict/--max-size, and publisher-mistake warnings."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from click.testing import CliRunner

from releasecache.cli import cli
from releasecache.errors import IntegrityError, PublisherWarning
from releasecache.manifest import Manifest, manifest_name
from tests.support.fixtures.toy import PROJECT

E1 = "behavior_ecephys_sessions/1044385384/ecephys_session_1044385384.nwb"


def run(args, *, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result, (json.loads(result.stdout) if "--json" in args else None)


@pytest.fixture
def vbn(vbn_bucket, tmp_path):
    def make(cache="cache", *extra):
        return ["--cache-dir", tmp_path / cache, "--bucket", vbn_bucket.bucket, "--project", vbn_bucket.project,
                "--endpoint-url", vbn_bucket.endpoint_url, "--no-progress", *extra]
    return make


def test_diff_rows_announces_fetches_then_works_offline(vbn):
    result, _ = run([*vbn(), "diff", "0.1.0", "0.2.0", "--rows"])
    assert "fetching 4 files" in result.stderr and "units.csv (0.1.0" in result.stderr
    assert "project_metadata/units.csv changed\n    rows: 50 -> 50, keyed by unit_id" in result.stdout
    assert "columns added: quality" in result.stdout and "removed: 1029221057" in result.stdout
    result, data = run([*vbn(), "--offline", "diff", "0.1.0", "0.2.0", "--rows", "units", "--json"])
    assert "fetching" not in result.stderr
    units = next(c for c in data["changes"] if c["path"] == "project_metadata/units.csv")
    assert units["details"]["column_changes"][0]["column"] == "amplitude"
    assert not any("details" in c for c in data["changes"] if c["path"] != "project_metadata/units.csv")
    run([*vbn(), "diff", "0.2.0", "0.3.0"])  # saves the 0.3.0 manifest, fetches no CSV
    result, _ = run([*vbn(), "--offline", "diff", "0.2.0", "0.3.0", "--rows", "channels"], code=5)
    assert "does not hold" in result.stderr
    result, _ = run([*vbn(), "diff", "0.1.0", "0.2.0", "--rows", "probes"], code=2)
    assert "did not change" in result.stderr


def test_diff_file_streamed_and_markdown(vbn, tmp_path):
    result, _ = run([*vbn(), "diff", "0.1.0", "0.2.0", "--file", E1, "--stream", "--nwb-path", "units"])
    assert "fetching" not in result.stderr and not (tmp_path / "cache" / "blobs").exists()
    for path in ("units/amplitude", "units/spike_amplitudes", "units/waveform_mean"):
        assert f"    {path} changed (dataset: values:" in result.stdout
    assert "divided by 1.25" in result.stdout and "streamed: old" in result.stdout
    result, _ = run([*vbn(), "diff", "0.2.0", "0.3.0", "--file", "ecephys_session_1044385384.nwb", "--markdown"])
    assert "fetching 2 files" in result.stderr
    assert "`general/extracellular_ephys/electrodes/valid_data` changed" in result.stdout
    run([*vbn(), "diff", "0.1.0", "0.2.0", "--stream"], code=2)
    result, data = run([*vbn(), "diff", "0.1.0", "0.2.0", "--file", E1, "--stream", "--no-values", "--json"])
    details = next(c for c in data["changes"] if c["path"] == E1)["details"]
    assert details["values_compared"] is False and details["changes"] == []  # the fix changed values only
    assert 0 < details["bytes_read_old"] <= details["size_old"]


def test_record_check_and_download_record_in_a_second_cache(vbn, tmp_path):
    lock = tmp_path / "lock.json"
    run([*vbn(), "download", "--version", "0.2.0", "--session", "1044385384", "--write-record", lock])
    result, data = run([*vbn(), "record", "check", lock, "--json"])
    assert data["ok"] and all(f["server"] == "ok" and f["cache"] == "ok" for f in data["files"])
    result, _ = run([*vbn("second"), "download", "--record", lock])
    assert "record reproduces" in result.stdout
    recorded = {f["file_hash"] for f in json.loads(lock.read_text())["files"]}
    blobs = {p.name for p in (tmp_path / "second" / "blobs").rglob("*") if p.is_file()}
    assert blobs == recorded  # exactly the recorded files, nothing else
    for f in json.loads(lock.read_text())["files"]:
        view = tmp_path / "second" / f"visual-behavior-neuropixels-{f['version']}" / f["path"]
        first = tmp_path / "cache" / f"visual-behavior-neuropixels-{f['version']}" / f["path"]
        assert view.read_bytes() == first.read_bytes()
    result, _ = run([*vbn("third"), "record", "check", lock, "--no-server"], code=1)
    assert "missing  in cache: project_metadata/units.csv" in result.stdout
    tampered = json.loads(lock.read_text())
    tampered["manifests"][0]["blake2b"] = "0" * 128
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    result, _ = run([*vbn(), "record", "check", tmp_path / "bad.json"], code=3)
    assert "differs from the recorded" in result.stdout
    run([*vbn(), "download", "--record", lock, "--session", "1"], code=2)
    (tmp_path / "not.json").write_text("[]")
    run([*vbn(), "record", "check", tmp_path / "not.json"], code=3)


def test_budget_on_the_command_line(vbn, tmp_path):
    run([*vbn(), "download", "--version", "0.1.0"])
    blobs = lambda: sum(p.stat().st_size for p in (tmp_path / "cache" / "blobs").rglob("*") if p.is_file())  # noqa: E731
    full = blobs()
    _, data = run([*vbn(), "evict", "--max-size", "1MB", "--json"], code=6)  # 0.1.0 is current: pinned
    assert data["dry_run"] and not data["evicted"] and not data["fits"]
    run([*vbn(), "download", "--version", "0.3.0", "--metadata-only"])  # 0.3.0 becomes current
    full = blobs()
    result, data = run([*vbn(), "evict", "--max-size", str(full - 1), "--json"])
    assert data["evicted"] and data["dry_run"] and blobs() == full
    result, _ = run([*vbn(), "pin", "0.1.0"])
    assert "visual-behavior-neuropixels_project_manifest_v0.1.0.json" in result.stdout
    _, data = run([*vbn(), "evict", "--max-size", str(full - 1), "--delete", "--json"], code=6)
    assert not data["evicted"]  # every 0.1.0 file is pinned now
    run([*vbn(), "unpin", "0.1.0"])
    _, data = run([*vbn(), "evict", "--max-size", str(full - 1), "--delete", "--json"])
    assert data["evicted"] and blobs() <= full - 1
    # A download under the budget makes room first; the current version's files are never evicted.
    _, data = run([*vbn("", "--max-size", str(full - 1)), "download", "--version", "0.3.0", "--json"])
    assert not data["report"]["failed"] and blobs() <= full - 1 + 2048 * 1024


def test_publisher_mistakes_warn(fresh_bucket, s3_server, make_cache, tmp_path):
    """One version id with two hashes, a version published again, an object the manifest misdescribes."""
    client = s3_server.admin_client()
    cache = make_cache(tmp_path / "c", bucket=fresh_bucket)
    first, second, third = fresh_bucket.manifests
    for m in (first, second, third):
        cache.get_manifest(m.name)
    raw = json.loads(third.to_json())
    raw["manifest_version"] = "0.4.0"
    entry = next(iter(raw["metadata_files"].values()))
    entry["file_hash"] = "f" * 128  # same url and version id as 0.3.0, other content
    name = manifest_name(PROJECT, "0.4.0")
    client.put_object(Bucket=fresh_bucket.bucket, Key=f"{PROJECT}/manifests/{name}", Body=json.dumps(raw).encode())
    with pytest.warns(PublisherWarning, match="one version id is one object"):
        cache.get_manifest(name)

    # The server's object has other bytes than the manifest says, in every download: a publisher's mistake.
    with pytest.warns(PublisherWarning, match="does not describe the object it pins"):
        with pytest.raises(IntegrityError):
            cache.load_manifest(name)
            cache.download_metadata(next(iter(raw["metadata_files"])))

    # 0.3.0 published again with different bytes: `manifests --check` says so.
    changed = json.loads(third.to_json())
    changed["data_pipeline"] = [{"name": "AllenSDK", "version": "9.9.9"}]
    client.put_object(Bucket=fresh_bucket.bucket, Key=f"{PROJECT}/manifests/{third.name}",
                      Body=json.dumps(changed).encode())
    args = ["--cache-dir", tmp_path / "c", "--bucket", fresh_bucket.bucket, "--project", PROJECT, "--endpoint-url",
            fresh_bucket.endpoint_url, "manifests", "--check", "--json"]
    result, data = run(args, code=1)
    assert any("published again with different content" in p for p in data["problems"])
    assert any("one version id is one object" in p for p in data["problems"])
    assert "releasecache: warning:" in result.stderr


def test_server_size_contradicting_the_manifest_warns(fresh_bucket, s3_server, make_cache, tmp_path):
    """A manifest whose recorded size is not the pinned object's: a publisher's mistake, said after the retries."""
    client = s3_server.admin_client()
    third = fresh_bucket.manifests[-1]
    raw = json.loads(third.to_json())
    raw["manifest_version"] = "0.5.0"
    file_id, entry = next((k, v) for k, v in raw["data_files"].items() if k == "0")
    entry["size"] = 123  # the object has other length
    name = manifest_name(PROJECT, "0.5.0")
    client.put_object(Bucket=fresh_bucket.bucket, Key=f"{PROJECT}/manifests/{name}", Body=json.dumps(raw).encode())
    cache = make_cache(tmp_path / "c", bucket=fresh_bucket)
    cache.load_manifest(name)
    with pytest.warns(PublisherWarning, match=r"bytes in every one of \d downloads, the manifest says 123"):
        with pytest.raises(IntegrityError, match="manifest says 123"):
            cache.download_data(file_id)
    assert not cache.is_cached(cache.data_entry(file_id))
