"""The HTTP and local-mirror remotes, against real servers and directories."""

from __future__ import annotations

import functools
import threading
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from releasecache import CloudCache, OutdatedManifestWarning, TransferConfig
from releasecache.errors import RemoteNotFoundError
from tests.support.fixtures.toy import PROJECT
from releasecache.remote import HttpRemote, LocalRemote, S3Remote, make_remote
from releasecache.manifest import S3Location

from .conftest import SMALL_PARTS


def _prefetch_all(cache, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        cache.load_manifest(name)
    report = cache.prefetch(progress=False)
    assert report.ok, report.failed
    return report


def test_http_remote_on_s3_endpoint(tmp_path, toy_bucket, toy_release):
    base = f"{toy_bucket.endpoint_url}/{toy_bucket.bucket}"
    cache = CloudCache.from_http(tmp_path / "c", base, PROJECT, transfer_config=TransferConfig(**SMALL_PARTS),
                                 progress=False)
    assert cache.list_manifest_file_names() == toy_bucket.names  # S3 ListObjectsV2 over plain HTTP
    _prefetch_all(cache, toy_bucket.names[0])
    for key in ("sessions/100/probe_A.dat", "project_metadata/units.csv", "empty/empty.dat"):
        local = cache.cache_dir / f"{PROJECT}-0.1.0" / key
        assert local.read_bytes() == (toy_release["0.1.0"] / PROJECT / key).read_bytes()


def test_http_remote_pins_version_ids(toy_bucket, toy_release):
    """An old version id still serves the old bytes after the key was overwritten."""
    v1, v2 = toy_bucket.manifests[0], toy_bucket.manifests[1]
    old, new = v1.metadata_files["units"], v2.metadata_files["units"]
    assert old.key == new.key and old.version_id != new.version_id
    remote = HttpRemote(f"{toy_bucket.endpoint_url}/{toy_bucket.bucket}")
    with remote.get_range(old.location) as response:
        assert b"".join(response.chunks) == (toy_release["0.1.0"] / old.key).read_bytes()
        assert response.version_id == old.version_id
    with remote.get_range(new.location, 5, 9) as response:
        assert response.partial and response.start == 5
        assert b"".join(response.chunks) == (toy_release["0.2.0"] / new.key).read_bytes()[5:10]
    with pytest.raises(RemoteNotFoundError):
        remote.get_range(S3Location(toy_bucket.bucket, f"{PROJECT}/nope.csv"))


def test_s3_remote_stat_and_range(toy_bucket, toy_release):
    entry = toy_bucket.manifests[0].data_files["1"]
    remote = S3Remote(toy_bucket.bucket, endpoint_url=toy_bucket.endpoint_url)
    assert remote.stat(entry.location) == 300_000
    with remote.get_range(entry.location, 299_990) as response:
        assert response.total_size == 300_000 and response.start == 299_990
        assert b"".join(response.chunks) == (toy_release["0.1.0"] / entry.key).read_bytes()[-10:]


def test_s3_remote_lists_anonymously_without_boto3_as_boto3_does(monkeypatch, toy_bucket):
    """The plain GET of an anonymous listing names what boto3's paginated ListObjectsV2 names."""
    remote = make_remote(bucket=toy_bucket.bucket, endpoint_url=toy_bucket.endpoint_url)
    assert remote.listing_url() is not None and isinstance(remote.lister, HttpRemote)
    plain = remote.list_manifests(PROJECT)
    assert remote._client is None  # no boto3 client was built for it
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", toy_bucket.endpoint_url)  # boto3 would honour it: boto3 lists
    assert remote.listing_url() is None
    assert sorted(remote.list_manifests(PROJECT)) == sorted(plain) == sorted(toy_bucket.names)
    assert remote._client is not None


@pytest.fixture
def static_server(toy_release):
    """A plain static web server (no Range support, no listing API) over the 0.1.0 tree."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(toy_release["0.1.0"]))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_static_server_without_range_support(tmp_path, toy_bucket, static_server):
    # Serve the published 0.1.0 manifest from a local file, and the data from a server that ignores Range.
    manifest = toy_bucket.manifests[0]
    (tmp_path / "c" / "manifests").mkdir(parents=True)
    (tmp_path / "c" / "manifests" / manifest.name).write_text(manifest.to_json())
    cache = CloudCache.from_http(tmp_path / "c", static_server, PROJECT, progress=False,
                                 transfer_config=TransferConfig(**SMALL_PARTS),
                                 http_options={"manifest_names": [manifest.name], "send_version_id": False})
    cache.load_manifest(manifest.name)
    path = cache.download_data(1)  # bigger than one part: the whole body streams instead
    assert path.resolve().name == manifest.data_files["1"].file_hash


def test_local_mirror(tmp_path, toy_bucket, toy_release):
    # A synced bucket: keys under a directory, manifests in <project>/manifests/.
    mirror = toy_release["0.1.0"]
    manifest = toy_bucket.manifests[0]
    (mirror / PROJECT / "manifests").mkdir(exist_ok=True)
    (mirror / PROJECT / "manifests" / manifest.name).write_text(manifest.to_json())
    cache = CloudCache.from_mirror(tmp_path / "c", mirror, PROJECT, progress=False)
    assert cache.list_manifest_file_names() == [manifest.name]
    _prefetch_all(cache, manifest.name)
    assert (cache.cache_dir / f"{PROJECT}-0.1.0" / "sessions/100/probe_A.dat").stat().st_size == 300_000
    assert LocalRemote(mirror).stat(manifest.data_files["1"].location) == 300_000
