"""Shared fixtures: a real S3-compatible server on loopback with the toy release published."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest

from releasecache import CloudCache, TransferConfig
from tests.support.fixtures.toy import PROJECT, build_toy_release
from tests.support.proxy import FaultProxy
from tests.support.s3server import S3Server, publish_fixture

_bucket_names = (f"toy-bucket-{i}" for i in itertools.count())


@pytest.hookimpl(trylast=True)  # after tests/unit/conftest.py has marked its tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep ``pytest -m unit`` honest: a test in the fast subset may not start the S3 server."""
    wrong = [item.nodeid for item in items if item.get_closest_marker("unit") and "s3_server" in item.fixturenames]
    if wrong:
        raise pytest.UsageError(f"marked unit but need the S3 server: {', '.join(wrong)}")


# Small parts so that the 300 kB "large" toy file is fetched as several ranged GETs.
SMALL_PARTS = dict(part_size=64 * 1024, max_parts_in_flight=4, window=6, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture(scope="session")
def s3_server():
    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def toy_release(tmp_path_factory) -> dict[str, Path]:
    return build_toy_release(tmp_path_factory.mktemp("toy-release"))


def _publish(server: S3Server, release: dict[str, Path]) -> SimpleNamespace:
    bucket = next(_bucket_names)
    manifests = publish_fixture(server, bucket, PROJECT, release)
    return SimpleNamespace(bucket=bucket, project=PROJECT, manifests=manifests,
                           names=[m.name for m in manifests], endpoint_url=server.endpoint_url)


@pytest.fixture(scope="session")
def toy_bucket(s3_server, toy_release) -> SimpleNamespace:
    """The toy release published once for the session (read-only use)."""
    return _publish(s3_server, toy_release)


@pytest.fixture
def fresh_bucket(s3_server, toy_release) -> SimpleNamespace:
    """The toy release published into a bucket of its own (for tests that change it)."""
    return _publish(s3_server, toy_release)


@pytest.fixture
def proxy(s3_server):
    with FaultProxy(s3_server.endpoint_url) as p:
        yield p


@pytest.fixture
def make_cache(tmp_path, toy_bucket):
    """Build a CloudCache on the toy bucket; ``endpoint_url`` may point at a proxy."""

    def make(cache_dir: Path | None = None, *, endpoint_url: str | None = None, bucket=None, **config):
        settings = {**SMALL_PARTS, **config}
        return CloudCache.from_s3(
            cache_dir or tmp_path / "cache",
            (bucket or toy_bucket).bucket,
            PROJECT,
            endpoint_url=endpoint_url or toy_bucket.endpoint_url,
            transfer_config=TransferConfig(**settings),
            progress=False,
        )

    return make


@pytest.fixture(scope="session")
def vbn_release(tmp_path_factory) -> dict[str, Path]:
    """The small realistic VBN release (three versions) written once per session."""
    from tests.support.fixtures.vbn import build_vbn_release

    return build_vbn_release(tmp_path_factory.mktemp("vbn-release"))


@pytest.fixture(scope="session")
def vbn_bucket(s3_server, vbn_release) -> SimpleNamespace:
    """The VBN fixture published to the loopback S3 server, in the real bucket's name and layout."""
    from releasecache.vbn.project import BUCKET_NAME, PROJECT_NAME

    manifests = publish_fixture(s3_server, BUCKET_NAME, PROJECT_NAME, vbn_release)
    return SimpleNamespace(bucket=BUCKET_NAME, project=PROJECT_NAME, manifests=manifests,
                           names=[m.name for m in manifests], endpoint_url=s3_server.endpoint_url,
                           release=vbn_release)
