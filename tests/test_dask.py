"""Bulk downloads on a Dask cluster: process workers sharing one cache directory."""

from __future__ import annotations

import json
import os
import pickle

import pytest
from distributed import Client, LocalCluster

from releasecache import CloudCache
from releasecache.cache.prefetch import fetch_one as _fetch_one
from tests.support.fixtures.toy import PROJECT
from releasecache.utils import hash_file as file_blake2b
from tests.support.proxy import default_match


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as dask_client:
        yield dask_client


def object_gets(proxy) -> dict[str, int]:
    return {path: n for (method, path), n in proxy.stats.requests.items() if default_match(method, path, {})}


def _cache(root, toy_bucket, endpoint_url, **kwargs):
    cache = CloudCache.from_s3(root, toy_bucket.bucket, PROJECT, endpoint_url=endpoint_url, progress=False, **kwargs)
    cache.load_latest_manifest()
    return cache


def test_cache_pickles_and_works_after(toy_bucket, tmp_path):
    cache = _cache(tmp_path / "c", toy_bucket, toy_bucket.endpoint_url)
    cache.download_metadata("units")
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.current_manifest() == cache.current_manifest() and clone.cache_dir == cache.cache_dir
    assert clone.download_data(1).read_bytes() == cache.download_data(1).read_bytes()  # reconnects lazily


def test_prefetch_on_a_local_cluster_fetches_each_file_once(client, toy_bucket, proxy, tmp_path):
    # the requests one complete download takes, made in this process
    _cache(tmp_path / "reference", toy_bucket, proxy.url).prefetch(progress=False)
    reference = object_gets(proxy)
    proxy.clear()
    log_path = tmp_path / "usage.jsonl"
    cache = _cache(tmp_path / "shared", toy_bucket, proxy.url, usage_log=log_path)
    report = cache.prefetch(executor=client.get_executor(), progress=False)
    assert report.ok, report.failed
    assert len(report.fetched) == len(list(cache.manifest.entries())) == 10
    assert object_gets(proxy) == reference  # every file fetched exactly once, across both workers
    # every file verified in the shared cache, at its view path
    for entry in cache.manifest.entries():
        path = cache.store.view_path(cache.manifest.view_dir_name, entry.relative_path)
        assert file_blake2b(path) == entry.file_hash == path.resolve().name
    # the work ran on the worker processes (they appended to the usage log the cache carried with it)
    worker_pids = set(client.run(os.getpid).values())
    used_by = {json.loads(line)["pid"] for line in log_path.read_text().splitlines()}
    assert used_by <= worker_pids and os.getpid() not in used_by and len(worker_pids) == 2


def test_two_workers_asking_for_one_file_download_it_once(client, toy_bucket, proxy, tmp_path):
    cache = _cache(tmp_path / "shared", toy_bucket, proxy.url)
    entry = cache.data_entry(1)  # the 300 kB file
    workers = sorted(client.scheduler_info()["workers"])
    futures = [client.submit(_fetch_one, cache, entry, pure=False, workers=[w]) for w in workers]
    outcomes = client.gather(futures)
    assert sorted(o.received for o in outcomes) == [0, 300_000]  # only the winner's bytes crossed the wire
    assert sum(o.waited or o.present for o in outcomes) == 1  # the loser waited for the winner's lock
    assert sum(n for key, n in object_gets(proxy).items() if key.endswith("probe_A.dat")) == 1
    assert cache.is_cached(entry)


def _session_count(project_cache) -> int:
    return len(project_cache.get_ecephys_session_table())


def test_project_cache_runs_on_a_worker(client, vbn_bucket, tmp_path):
    from releasecache.vbn.project import ProjectCache

    cache = ProjectCache.from_s3(tmp_path / "vbn", endpoint_url=vbn_bucket.endpoint_url, progress=False)
    here = len(cache.get_ecephys_session_table())
    assert client.submit(_session_count, cache, pure=False).result() == here > 0
