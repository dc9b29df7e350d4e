"""Streaming reads at the pinned version, against the loopback S3 server."""

from __future__ import annotations

import datetime
import io
import json
import random
import warnings

import numpy as np
import pytest

from releasecache import CloudCache, OutdatedManifestWarning, TransferConfig
from releasecache.errors import DownloadError, IntegrityError
from tests.support.fixtures.toy import PROJECT
from releasecache.remote.local import LocalRemote
from releasecache.transfer.stream import RemoteFile
from releasecache.vbn.streaming import open_data, open_nwb, stream_nwb
from tests.support.proxy import Fault, wait_for
from tests.support.s3server import publish_fixture

NWB_PROJECT = "nwb-stream"
UNITS = {"0.1.0": 30, "0.2.0": 33}


def write_nwb(path, *, n_units: int, n_trials: int = 120, samples: int = 600_000, seed: int = 0):
    """A small NWB file shaped like a session: a large acquisition array, units and trials."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    rng = np.random.default_rng(seed)
    nwb = NWBFile(session_description="streaming test", identifier=f"stream-{seed}",
                  session_start_time=datetime.datetime(2020, 8, 19, 14, 47, tzinfo=datetime.timezone.utc))
    nwb.add_acquisition(TimeSeries(name="lfp_like", data=rng.standard_normal((samples, 4)).astype("float32"),
                                   unit="V", rate=2500.0))
    nwb.add_unit_column(name="quality", description="unit quality")
    for i in range(n_units):
        nwb.add_unit(spike_times=np.sort(rng.uniform(0, 3600, 300 + 10 * i)), quality="good" if i % 3 else "noise")
    nwb.add_trial_column(name="go", description="go trial")
    for i in range(n_trials):
        nwb.add_trial(start_time=10.0 * i, stop_time=10.0 * i + 5, go=bool(i % 2))
    with NWBHDF5IO(str(path), "w") as nwb_io:
        nwb_io.write(nwb)
    return path


@pytest.fixture(scope="module")
def nwb_release(s3_server, tmp_path_factory):
    """Two versions of a one-session release; the session file changes between them (same key)."""
    root = tmp_path_factory.mktemp("nwb-release")
    versions = {}
    for seed, (version, n_units) in enumerate(UNITS.items()):
        base = root / version
        meta = base / NWB_PROJECT / "project_metadata"
        meta.mkdir(parents=True)
        (meta / "ecephys_sessions.csv").write_text("ecephys_session_id,file_id\n1,0\n")
        session = base / NWB_PROJECT / "behavior_ecephys_sessions" / "1"
        session.mkdir(parents=True)
        write_nwb(session / "ecephys_session_1.nwb", n_units=n_units, seed=seed)
        (base / "file_ids.json").write_text(json.dumps({"0": f"{NWB_PROJECT}/behavior_ecephys_sessions/1/"
                                                             "ecephys_session_1.nwb"}))
        versions[version] = base
    bucket = "nwb-stream-bucket"
    manifests = publish_fixture(s3_server, bucket, NWB_PROJECT, versions)
    return bucket, [m.name for m in manifests], versions


def _cache(tmp_path, bucket, endpoint_url, name):
    cache = CloudCache.from_s3(tmp_path / "cache", bucket, NWB_PROJECT, endpoint_url=endpoint_url, progress=False,
                               transfer_config=TransferConfig(backoff_base=0.01, backoff_max=0.05))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        cache.load_manifest(name)
    return cache


#: What a stream of unknown size reads with its first request (RemoteFile's default head).
HEAD = 1024 * 1024


def test_stream_units_and_trials_reads_a_small_fraction(nwb_release, proxy, tmp_path, capsys):
    bucket, names, versions = nwb_release
    cache = _cache(tmp_path, bucket, proxy.url, names[0])
    size = (versions["0.1.0"] / NWB_PROJECT / "behavior_ecephys_sessions/1/ecephys_session_1.nwb").stat().st_size
    proxy.clear()  # count only the session file's bytes
    with stream_nwb(cache, 0) as (nwbfile, fobj):
        units = nwbfile.units.to_dataframe()
        trials = nwbfile.trials.to_dataframe()
        assert isinstance(fobj, RemoteFile) and fobj.verified is False
        assert fobj.size == size
    # counted after close: a background prefetch may still have been running inside the block
    nbytes, requests = fobj.bytes_read, fobj.requests
    fraction = nbytes / size
    assert len(units) == UNITS["0.1.0"] and len(trials) == 120
    assert list(units["quality"][:3]) == ["noise", "good", "good"]
    assert len(units["spike_times"].iloc[5]) == 350 and trials["go"].sum() == 60
    # the first request brings the head (1 MiB, what HDF5 reads first); beyond it, a small fraction
    assert nbytes - HEAD < 0.10 * size, f"streamed {fraction:.1%} of the file"
    # what the reader counted is what crossed the wire (the proxy counts a body once it has written
    # it, which may be just after the reader has it: wait for the count, do not race it)
    assert wait_for(lambda: proxy.stats.bytes_sent == nbytes, timeout=10), (proxy.stats.bytes_sent, nbytes)
    assert proxy.stats.gets() == requests
    # nothing was downloaded into the store; the record says the file was streamed, not verified
    assert not cache.is_cached(cache.data_entry(0))
    (record,) = cache.used_files()
    assert record["streamed"] is True and record["path"].endswith("ecephys_session_1.nwb")
    with capsys.disabled():
        print(f"\n[stream] units + trials of a {size / 1e6:.1f} MB NWB file: read {fraction:.2%} "
              f"({nbytes / 1e3:.0f} kB) in {requests} ranged GETs")


def test_session_tables_from_a_stream_read_a_small_fraction_in_few_requests(nwb_release, proxy, tmp_path):
    """Units and trials through the session API over a stream: a few GETs of a small part of the file,
    the same frames as from the local file, and no pynwb objects built."""
    import pandas as pd

    from releasecache.vbn.nwb import EcephysSession

    bucket, names, versions = nwb_release
    path = versions["0.1.0"] / NWB_PROJECT / "behavior_ecephys_sessions/1/ecephys_session_1.nwb"
    cache = _cache(tmp_path, bucket, proxy.url, names[0])
    proxy.clear()
    with open_data(cache, 0) as fobj, EcephysSession(fobj) as session:
        units, trials = session.get_units(), session.trials
        assert session._handle._nwbfile is None
    assert wait_for(lambda: proxy.stats.bytes_sent == fobj.bytes_read, timeout=10)
    assert proxy.stats.gets() == fobj.requests <= 3, fobj.requests
    assert fobj.bytes_read - HEAD < 0.08 * path.stat().st_size, fobj.bytes_read
    with EcephysSession(path) as local:
        pd.testing.assert_frame_equal(units, local.get_units(), check_exact=True)
        pd.testing.assert_frame_equal(trials, local.trials, check_exact=True)
    assert list(units["quality"][:3]) == ["noise", "good", "good"] and trials["go"].sum() == 60


def test_stream_is_pinned_to_the_manifest_version(nwb_release, tmp_path, s3_server):
    bucket, names, _ = nwb_release
    # 0.2.0 overwrote the key; reading 0.1.0 must still see 0.1.0's bytes
    old = _cache(tmp_path, bucket, s3_server.endpoint_url, names[0])
    with stream_nwb(old, 0) as (nwbfile, _):
        assert len(nwbfile.units) == UNITS["0.1.0"]
    new = _cache(tmp_path, bucket, s3_server.endpoint_url, names[1])
    with stream_nwb(new, 0) as (nwbfile, _):
        assert len(nwbfile.units) == UNITS["0.2.0"]


def test_stream_retries_transient_errors_and_refuses_another_version(nwb_release, proxy, tmp_path):
    bucket, names, _ = nwb_release
    cache = _cache(tmp_path, bucket, proxy.url, names[0])
    proxy.add(Fault("503", times=2, retry_after="0"))
    proxy.add(Fault("reset", times=1))
    with stream_nwb(cache, 0) as (nwbfile, fobj):
        assert len(nwbfile.trials) == 120
    assert proxy.stats.faults["503"] == 2 and proxy.stats.faults["reset"] == 1
    proxy.clear()
    proxy.add(Fault("version"))
    with pytest.raises(IntegrityError, match="refusing to read another version"):
        with open_data(cache, 0) as fobj:
            fobj.read(100)
    proxy.clear()
    proxy.add(Fault("500"))
    with pytest.raises(DownloadError, match="failed after 2 attempts"):
        with open_data(cache, 0, max_attempts=2) as fobj:
            fobj.read(100)


def test_remote_file_is_a_correct_seekable_file(toy_bucket, toy_release, make_cache):
    cache = make_cache()
    cache.load_latest_manifest()
    entry = cache.data_entry(1)  # the 300 kB toy file
    local = (toy_release["0.3.0"] / PROJECT / "sessions/100/probe_A.dat").read_bytes()
    rng = random.Random(7)
    with open_data(cache, 1, block_size=4096, max_readahead=32 * 1024, cache_bytes=64 * 1024) as fobj:
        assert fobj.seekable() and fobj.readable() and not fobj.writable()
        for _ in range(200):
            start = rng.randrange(0, len(local))
            length = rng.choice([1, 10, 4096, 5000, 70_000])
            fobj.seek(start)
            assert fobj.read(length) == local[start: start + length]
            assert fobj.tell() == min(len(local), start + length)
        fobj.seek(-10, io.SEEK_END)
        assert fobj.read() == local[-10:] and fobj.read(5) == b""
        buf = bytearray(1000)
        fobj.seek(123)
        assert fobj.readinto(buf) == 1000 and bytes(buf) == local[123:1123]
        buffered = io.BufferedReader(fobj, buffer_size=8192)
        buffered.seek(0)
        assert buffered.read() == local
    assert fobj.closed
    with pytest.raises(ValueError):
        fobj.read(1)
    with open_data(cache, 6) as empty:  # an empty object: size 0, no bytes
        assert empty.size == 0 and empty.read() == b"" and empty.read(10) == b""
    # any remote works: the same object from a mirror directory
    mirror = RemoteFile(LocalRemote(toy_release["0.3.0"]), entry.location, block_size=1024)
    mirror.seek(299_000)
    assert mirror.read(2000) == local[299_000:] and mirror.bytes_read >= 1000


def test_prefer_local_opens_the_verified_file(toy_bucket, make_cache):
    cache = make_cache()
    cache.load_latest_manifest()
    path = cache.download_data(0)
    with open_data(cache, 0, prefer_local=True) as fobj:
        assert not isinstance(fobj, RemoteFile) and fobj.read() == path.read_bytes()
    assert [r["streamed"] for r in cache.used_files()] == [False]


def test_open_nwb_on_a_local_file(nwb_release):
    _, _, versions = nwb_release
    path = versions["0.2.0"] / NWB_PROJECT / "behavior_ecephys_sessions/1/ecephys_session_1.nwb"
    with open(path, "rb") as fh:
        nwbfile = open_nwb(fh)
        assert len(nwbfile.units) == UNITS["0.2.0"]
        nwbfile.read_io.close()


def test_streamed_session_tables_take_few_requests_and_equal_the_local_ones(vbn_bucket, proxy, tmp_path):
    """``get_units()`` + ``trials`` + ``stimulus_presentations`` of a session opened with ``stream=True``:
    the frames a user gets from the downloaded file, from a few ranged GETs of a small part of the file,
    counted at the proxy (what crossed the wire), without building the file's pynwb objects."""
    import pandas as pd

    from releasecache import ProjectCache

    session_id = 1044385384
    key = f"behavior_ecephys_sessions/{session_id}/ecephys_session_{session_id}.nwb"
    cache = ProjectCache.from_s3(tmp_path / "streamed", endpoint_url=proxy.url, progress=False)
    cache.get_ecephys_session_table(), cache.get_probe_table()  # the metadata tables: cached before
    proxy.clear()
    with cache.get_ecephys_session(session_id, stream=True) as session:
        assert session.streamed and not session.verified
        streamed = (session.get_units(), session.trials, session.stimulus_presentations)
        assert session._handle._nwbfile is None  # h5py only: no pynwb objects built
        fobj = session.stream
    # anonymous: the ranged GETs are plain unsigned requests (the same ones), no boto3 client needed for them
    assert fobj.remote is cache.cache.remote.lister is not None
    size = fobj.size
    assert wait_for(lambda: proxy.stats.object_bytes(key) == fobj.bytes_read, timeout=10), (
        proxy.stats.object_bytes(key), fobj.bytes_read)
    gets = proxy.stats.gets(key)
    assert gets == fobj.requests <= 4, gets  # the first block (it tells the size), the head, the tail
    assert proxy.stats.gets() == gets  # nothing else was fetched for the three tables
    assert fobj.bytes_read <= size
    local = ProjectCache.from_s3(tmp_path / "local", endpoint_url=vbn_bucket.endpoint_url, progress=False)
    with local.get_ecephys_session(session_id) as downloaded:
        assert not downloaded.streamed
        expected = (downloaded.get_units(), downloaded.trials, downloaded.stimulus_presentations)
    for got, want in zip(streamed, expected):
        pd.testing.assert_frame_equal(got, want.assign(**{c: got[c] for c in ("lick_times",) if c in got}),
                                      check_exact=True)
    assert all(np.array_equal(a, b) for a, b in zip(streamed[1]["lick_times"], expected[1]["lick_times"]))


def test_a_stream_that_fails_to_open_fails_the_session_call(vbn_bucket, proxy, tmp_path):
    """The stream's first request runs while the session's metadata is gathered: its failure is still
    the session call's error (the package's), and nothing is left open."""
    from releasecache import ProjectCache

    cache = ProjectCache.from_s3(tmp_path / "streamed", endpoint_url=proxy.url, progress=False)
    cache.get_ecephys_session_table(), cache.get_probe_table()
    proxy.add(Fault("version"))
    with pytest.raises(IntegrityError, match="refusing to read another version"):
        cache.get_ecephys_session(1044385384, stream=True)
    proxy.clear()
    with cache.get_ecephys_session(1044385384, stream=True) as session:
        assert len(session.get_units()) > 0


def test_only_an_anonymous_s3_remote_streams_through_plain_gets(s3_server, tmp_path, monkeypatch):
    """Signed or specially routed requests stay with boto3; an anonymous bucket URL does not need it."""
    from releasecache.remote.factory import make_remote

    anonymous = make_remote(bucket="b", endpoint_url=s3_server.endpoint_url)
    assert anonymous.ranged_reader() is anonymous.lister is not None
    signed = make_remote(bucket="b", endpoint_url=s3_server.endpoint_url, anonymous=False,
                         s3_options={"aws_access_key_id": "k", "aws_secret_access_key": "s"})
    assert signed.ranged_reader() is signed
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")  # boto3 would route this request elsewhere
    assert anonymous.ranged_reader() is anonymous
    mirror = LocalRemote(tmp_path)
    assert mirror.ranged_reader() is mirror
