"""The ``releasecache`` command end to end against the loopback S3 server."""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from click.testing import CliRunner

from releasecache.cli import cli
from tests.support.fixtures.toy import PROJECT
from releasecache.utils import hash_file as file_blake2b
from tests.support.proxy import Fault, default_match

ALL_TOY_FILES_V1 = 10


def invoke(args, *, code=0, env=None):
    """Run the command in-process; check its exit code; return (result, parsed JSON or None)."""
    result = CliRunner(env=env).invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    parsed = None
    if "--json" in args:
        parsed = json.loads(result.stdout)
    return result, parsed


@pytest.fixture
def base(tmp_path, toy_bucket):
    """Global options for the toy bucket; the cache in tmp_path/cache."""
    def make(endpoint_url=None, cache_dir=None, bucket=None):
        return ["--cache-dir", cache_dir or tmp_path / "cache", "--bucket", bucket or toy_bucket.bucket,
                "--project", PROJECT, "--endpoint-url", endpoint_url or toy_bucket.endpoint_url, "--no-progress"]
    return make


def object_gets(proxy) -> collections.Counter:
    """GETs of data objects (not manifests or listings) per key."""
    out = collections.Counter()
    for (method, path), n in proxy.stats.requests.items():
        if default_match(method, path, {}):
            out[path] += n
    return out


def test_manifests_lists_and_marks(base, toy_bucket):
    _, data = invoke([*base(), "manifests", "--json"])
    assert [m["name"] for m in data["manifests"]] == toy_bucket.names
    assert data["latest"] == toy_bucket.names[-1] and data["current"] is None
    assert all(m["remote"] and not m["downloaded"] for m in data["manifests"])
    invoke([*base(), "download", "--version", "0.1.0", "--metadata-only"])
    _, data = invoke([*base(), "manifests", "--json"])
    first = data["manifests"][0]
    assert first["current"] and first["downloaded"] and not first["latest"] and data["current"] == first["name"]
    result, _ = invoke([*base(), "manifests"])
    assert "latest" in result.stdout and "current" in result.stdout
    # offline: only what the cache holds, remote unknown
    _, data = invoke([*base(), "--offline", "manifests", "--json"])
    assert [m["name"] for m in data["manifests"]] == [toy_bucket.names[0]]
    assert data["manifests"][0]["remote"] is None


def test_diff_names_versions_and_local_files(base, toy_bucket, tmp_path, s3_server):
    _, data = invoke([*base(), "diff", "0.1.0", "0.2.0", "--json"])
    kinds = collections.Counter(c["kind"] for c in data["changes"])
    assert kinds == {"changed": 2, "created": 1, "deleted": 1, "renamed": 1}
    assert data["old_version"] == "0.1.0" and data["new_version"] == "0.2.0"
    result, _ = invoke([*base(), "diff", toy_bucket.names[0], "v0.2.0", "--markdown"])
    assert result.stdout.startswith("## Changes from 0.1.0 to 0.2.0") and "### Renamed (1)" in result.stdout
    result, _ = invoke([*base(), "diff", "0.1.0", "0.2.0"])
    assert "project_metadata/units.csv changed" in result.stdout
    invoke([*base(), "diff", "0.1.0", "0.2.0", "--exit-code"], code=1)
    # two local manifest files: no cache directory, no network (the endpoint is a closed port)
    for name in toy_bucket.names:
        body = s3_server.admin_client().get_object(Bucket=toy_bucket.bucket, Key=f"{PROJECT}/manifests/{name}")
        (tmp_path / name).write_bytes(body["Body"].read())
    a, b = tmp_path / toy_bucket.names[1], tmp_path / toy_bucket.names[2]
    offline_args = ["--endpoint-url", "http://127.0.0.1:9", "--project", PROJECT]
    _, data = invoke([*offline_args, "diff", a, b, "--json"])
    assert {c["path"] for c in data["changes"]} >= {"project_metadata/extra.csv", "project_metadata/probes.csv"}
    result, _ = invoke([*offline_args, "diff", a, a, "--exit-code"])
    assert "equivalent" in result.stdout
    # no cache dir, by name: read straight from the remote, nothing written
    _, data = invoke(["--bucket", toy_bucket.bucket, "--project", PROJECT, "--endpoint-url",
                      toy_bucket.endpoint_url, "diff", "0.2.0", "latest", "--json"])
    assert data["new_version"] == "0.3.0"
    # a malformed manifest file is an integrity error (3), reported as JSON too
    bad = tmp_path / "bad_v1.0.0.json"
    bad.write_text("{not json")
    _, data = invoke([*offline_args, "diff", bad, a, "--json"], code=3)
    assert data["error"]["type"] == "ManifestParseError"


def test_download_plan_then_fetch(base, toy_bucket, proxy, tmp_path):
    args = base(endpoint_url=proxy.url)
    _, plan = invoke([*args, "download", "--version", "0.1.0", "--dry-run", "--json"])
    entries = plan["plan"]["entries"]
    assert len(entries) == ALL_TOY_FILES_V1 and {e["state"] for e in entries} == {"fetch"}
    assert plan["plan"]["bytes_to_fetch"] == sum(e["size"] for e in entries) > 300_000
    # sizes asked with a listing, not a request per object; nothing fetched
    assert not object_gets(proxy) and not list((tmp_path / "cache").glob("blobs/*/*/*"))
    text, _ = invoke([*args, "download", "--version", "0.1.0", "--dry-run"])
    assert "293.0 KiB  sessions/100/probe_A.dat" in text.stdout
    proxy.clear()
    _, data = invoke([*args, "download", "--version", "0.1.0", "--json"])
    assert len(data["report"]["fetched"]) == ALL_TOY_FILES_V1 and not data["report"]["failed"]
    assert data["manifest"] == toy_bucket.names[0]
    _, again = invoke([*args, "download", "--version", "0.1.0", "--json"])
    assert len(again["report"]["present"]) == ALL_TOY_FILES_V1 and not again["report"]["fetched"]
    # the next version: only what changed is fetched; the rest is linked
    _, nxt = invoke([*args, "download", "--version", "0.2.0", "--json"])
    assert sorted(nxt["report"]["fetched"]) == ["project_metadata/units.csv", "sessions/102/session_102.dat",
                                                "sessions/104/session_104.dat"]
    view = tmp_path / "cache" / f"{PROJECT}-0.2.0" / "moved/101/session_101.dat"
    assert view.is_symlink() and not os.path.isabs(os.readlink(view))


def test_download_selections(base, toy_bucket):
    _, data = invoke([*base(), "download", "--version", "0.3.0", "--metadata-only", "--json"])
    assert sorted(data["report"]["fetched"]) == [f"project_metadata/{n}.csv"
                                                 for n in ("channels", "extra", "sessions", "units")]
    _, data = invoke([*base(), "download", "--version", "0.3.0", "--file-id", "1", "--file-id", "5",
                      "--no-metadata", "--json"])
    assert sorted(data["report"]["fetched"]) == ["sessions/100/probe_A.dat", "sessions/104/session_104.dat"]
    _, data = invoke([*base(), "download", "--version", "0.3.0", "--file-id", "99", "--json"], code=2)
    assert data["error"]["type"] == "UnknownFileError"


def test_download_by_session_uses_the_tables(tmp_path, vbn_bucket):
    sessions = pd.read_csv(vbn_bucket.release["0.3.0"] / vbn_bucket.project / "project_metadata/ecephys_sessions.csv")
    session_id = int(sessions["ecephys_session_id"].iloc[0])
    args = ["--cache-dir", tmp_path / "vbn", "--endpoint-url", vbn_bucket.endpoint_url, "--no-progress"]
    _, data = invoke([*args, "download", "--version", "latest", "--session", session_id, "--no-metadata",
                      "--dry-run", "--json"])
    paths = [e["path"] for e in data["plan"]["entries"]]
    assert f"behavior_ecephys_sessions/{session_id}/ecephys_session_{session_id}.nwb" in paths
    assert all(p.startswith(f"behavior_ecephys_sessions/{session_id}/") for p in paths)
    invoke([*args, "download", "--version", "latest", "--session", 1, "--json"], code=2)  # unknown session


def test_exit_codes_and_json_errors(base, toy_bucket, tmp_path, proxy):
    _, data = invoke([*base(), "download", "--version", "9.9.9", "--json"], code=2)
    assert data["error"]["exit_code"] == 2 and "available" in data["error"]["message"]
    result, _ = invoke([*base(), "download", "--shard", "3/3"], code=2)
    assert "K must be in 0..N-1" in result.stderr
    invoke([*base(), "--mirror", tmp_path, "--offline", "manifests"], code=2)
    invoke(["manifests"], code=2)  # no cache directory
    # network: nothing listens on the endpoint
    _, data = invoke([*base(endpoint_url="http://127.0.0.1:9"), "manifests", "--json"], code=4)
    assert data["error"]["type"] == "EndpointUnreachableError" and "--offline" in data["error"]["message"]
    # storage: the cache directory cannot be created
    blocker = tmp_path / "file"
    blocker.write_text("x")
    invoke([*base(cache_dir=blocker / "cache"), "manifests"], code=6)
    # offline and not cached
    invoke([*base(), "download", "--version", "0.1.0", "--metadata-only"])
    _, data = invoke([*base(), "--offline", "download", "--file-id", "1", "--json"], code=5)
    assert "--offline" in data["error"]["message"]
    # one file fails for good: the others still arrive, exit 1, the failure is listed
    proxy.add(Fault("404", match=lambda method, path, headers: method == "GET" and "session_101" in path))
    _, data = invoke([*base(endpoint_url=proxy.url), "download", "--version", "0.1.0", "--json"], code=1)
    assert list(data["report"]["failed"]) == ["sessions/101/session_101.dat"]
    assert len(data["report"]["fetched"]) == ALL_TOY_FILES_V1 - 4 - 1  # the metadata was already there


def test_shards_of_three_processes_fetch_each_file_exactly_once(base, toy_bucket, proxy, tmp_path):
    # one process alone: the requests a complete download of 0.3.0 takes
    invoke([*base(endpoint_url=proxy.url, cache_dir=tmp_path / "reference"), "download", "--version", "0.3.0"])
    reference = object_gets(proxy)
    proxy.clear()
    args = [sys.executable, "-m", "releasecache.cli", *map(str, base(endpoint_url=proxy.url)), "download",
            "--version", "0.3.0", "--json"]
    procs = [subprocess.Popen([*args, "--shard", f"{k}/3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for k in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    reports = [json.loads(out)["report"] for out, _ in outputs]
    fetched = [set(r["fetched"]) for r in reports]
    assert not (fetched[0] & fetched[1]) and not (fetched[1] & fetched[2]) and not (fetched[0] & fetched[2])
    assert len(set().union(*fetched)) == 10 and all(fetched)  # every file, in some shard
    gets = object_gets(proxy)
    assert gets == reference  # each file fetched exactly once in total: the requests of one download
    assert len(gets) == 10 and all(n == 1 for key, n in gets.items() if not key.endswith("empty.dat"))


def test_verify_du_gc(base, toy_bucket, tmp_path):
    for version in ("0.1.0", "0.3.0"):
        invoke([*base(), "download", "--version", version])
    _, usage = invoke([*base(), "du", "--json"])
    assert set(usage["manifests"]) >= {toy_bucket.names[0], toy_bucket.names[2]}
    _, ok = invoke([*base(), "verify", "--full", "--json"])
    assert ok["ok"] and ok["checked"] == ok["intact"] > 0
    victim = tmp_path / "cache" / f"{PROJECT}-0.3.0" / "sessions/100/probe_A.dat"
    blob = victim.resolve()
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff" * 8)
    _, bad = invoke([*base(), "verify", "--full", "--json"], code=1)
    assert [c["file_hash"] for c in bad["corrupt"]] == [blob.name]
    invoke([*base(), "verify", "--version", "0.3.0"])  # the corrupt blob was moved aside; missing is not a failure
    invoke([*base(), "verify", "--version", "0.3.0", "--require-complete"], code=1)
    invoke([*base(), "download", "--version", "0.3.0"])  # downloads it again
    _, recent = invoke([*base(), "gc", "--keep", "0.3.0", "--json"])  # 0.1.0 was used minutes ago: it stays
    assert recent["deleted_blobs"] == [] and all(m["kept"] for m in recent["manifests"])
    assert any("within the 30-day window" in m["why"] for m in recent["manifests"])
    _, dry = invoke([*base(), "gc", "--keep", "0.3.0", "--window-days", "0", "--json"])
    assert dry["dry_run"] and dry["deleted_blobs"] and (tmp_path / "cache" / f"{PROJECT}-0.1.0").exists()
    gone = [m for m in dry["manifests"] if not m["kept"]]
    assert gone and all("longer ago than the 0-day window" in m["why"] for m in gone)
    _, done = invoke([*base(), "gc", "--keep", "0.3.0", "--window-days", "0", "--delete", "--json"])
    assert sorted(done["deleted_blobs"]) == sorted(dry["deleted_blobs"])
    _, after = invoke([*base(), "du", "--json"])
    assert after["blob_bytes"] < usage["blob_bytes"]
    _, ok = invoke([*base(), "verify", "--version", "0.3.0", "--full", "--json"])
    assert ok["ok"]


def test_adopt_then_download_fetches_nothing(base, toy_bucket, toy_release, tmp_path, proxy):
    mirror = tmp_path / "sync"
    shutil.copytree(toy_release["0.3.0"] / PROJECT, mirror / PROJECT)
    (mirror / PROJECT / "sessions/100/session_100.dat").write_bytes(b"stale copy")
    args = base(endpoint_url=proxy.url)
    _, data = invoke([*args, "adopt", mirror, "--dry-run", "--json"], code=1)
    assert data["dry_run"] and len(data["adopted"]) == 9
    _, data = invoke([*args, "adopt", mirror, "--json"], code=1)  # 1: one file did not match
    assert len(data["adopted"]) == 9 and [m["path"] for m in data["mismatched"]] == ["sessions/100/session_100.dat"]
    assert object_gets(proxy) == {}
    _, report = invoke([*args, "download", "--version", "0.3.0", "--json"])
    assert report["report"]["fetched"] == ["sessions/100/session_100.dat"]
    assert sum(object_gets(proxy).values()) == 1
    result, _ = invoke([*args, "adopt", tmp_path / "cache"], code=2)
    assert "overlaps the cache directory" in result.stderr


def test_publish_uploads_only_changes(s3_server, toy_release, tmp_path):
    bucket = "cli-publish-bucket"
    s3_server.create_public_bucket(bucket)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-west-2"}
    args = ["--bucket", bucket, "--project", PROJECT, "--endpoint-url", s3_server.endpoint_url]
    _, first = invoke([*args, "publish", toy_release["0.1.0"], "--version", "0.1.0", "--json"], env=env)
    assert len(first["upload"]) == 10 and first["previous"] is None
    _, dry = invoke([*args, "publish", toy_release["0.2.0"], "--version", "0.2.0", "--dry-run", "--json"], env=env)
    expected = [f"{PROJECT}/moved/101/session_101.dat", f"{PROJECT}/project_metadata/units.csv",
                f"{PROJECT}/sessions/102/session_102.dat", f"{PROJECT}/sessions/104/session_104.dat"]
    assert dry["upload"] == expected
    _, second = invoke([*args, "publish", toy_release["0.2.0"], "--version", "0.2.0", "--json"], env=env)
    assert second["upload"] == expected and second["previous"] == first["manifest"] and len(second["reuse"]) == 6
    invoke([*args, "publish", toy_release["0.2.0"], "--version", "0.2.0"], code=2, env=env)  # immutable
    # anyone can now read the new release, verified
    reader = [*args, "--cache-dir", tmp_path / "reader", "--no-progress"]
    _, listing = invoke([*reader, "manifests", "--json"])
    assert [m["version"] for m in listing["manifests"]] == ["0.1.0", "0.2.0"]
    _, got = invoke([*reader, "download", "--version", "0.2.0", "--json"])
    assert len(got["report"]["fetched"]) == 10
    path = tmp_path / "reader" / f"{PROJECT}-0.2.0" / "sessions/102/session_102.dat"
    assert file_blake2b(path) == file_blake2b(toy_release["0.2.0"] / PROJECT / "sessions/102/session_102.dat")


def test_record_lock_of_what_was_used(base, toy_bucket, tmp_path):
    lock_path = tmp_path / "download-lock.json"
    invoke([*base(), "download", "--version", "0.3.0", "--file-id", "1", "--no-metadata", "--write-record", lock_path])
    lock = json.loads(lock_path.read_text())
    assert lock["manifest"]["name"] == toy_bucket.names[2] and len(lock["manifest"]["blake2b"]) == 128
    assert [f["path"] for f in lock["files"]] == ["sessions/100/probe_A.dat"]
    # run an analysis under `record`: exactly the files it opened are locked
    script = textwrap.dedent(f"""
        import sys
        from releasecache import CloudCache
        cache = CloudCache.from_s3({str(tmp_path / 'cache')!r}, {toy_bucket.bucket!r}, {PROJECT!r},
                                   endpoint_url={toy_bucket.endpoint_url!r}, progress=False)
        cache.load_manifest({toy_bucket.names[2]!r})
        cache.get_metadata("units")
        cache.download_data(5)
        sys.exit(3)
    """)
    out = tmp_path / "analysis-lock.json"
    result, _ = invoke([*base(), "record", "-o", out, "--", sys.executable, "-c", script], code=3)
    assert "recorded 2 files" in result.stderr
    lock = json.loads(out.read_text())
    assert sorted((f["section"], f["path"]) for f in lock["files"]) == [
        ("data", "sessions/104/session_104.dat"), ("metadata", "project_metadata/units.csv")]
    entry = next(f for f in lock["files"] if f["name"] == "5")
    manifest = toy_bucket.manifests[2]
    assert entry["file_hash"] == manifest.data_files["5"].file_hash
    assert entry["version_id"] == manifest.data_files["5"].version_id and entry["url"].endswith("session_104.dat")
    # a kept log converts the same way; --present locks what the cache holds
    log_path = tmp_path / "usage.jsonl"
    invoke([*base(), "record", "-o", tmp_path / "x.json", "--log", log_path, "--", sys.executable, "-c",
            script.replace("sys.exit(3)", "")])
    result, _ = invoke([*base(), "record", "-o", "-", "--log", log_path])
    assert len(json.loads(result.stdout)["files"]) == 2
    result, _ = invoke([*base(), "record", "-o", "-", "--present", "--version", "0.3.0"])
    assert sorted(f["path"] for f in json.loads(result.stdout)["files"]) == [
        "project_metadata/units.csv", "sessions/100/probe_A.dat", "sessions/104/session_104.dat"]
    invoke([*base(), "record", "-o", "-"], code=2)
