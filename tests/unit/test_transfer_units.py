"""transfer/resume.py and transfer/retry.py: resume state and the one retry policy, without a server."""

from __future__ import annotations

import json
import threading

import pytest

from releasecache.errors import DownloadError, RemoteError, TransientRemoteError
from releasecache.manifest import FileEntry
from releasecache.store import Store
from releasecache.transfer import TransferConfig
from releasecache.transfer.resume import SIDECAR_FORMAT, covered, merge, read_sidecar, write_sidecar
from releasecache.transfer.retry import Cancelled, RetryPolicy

H = "aa" * 64
ENTRY = FileEntry(name="1", url="https://b.s3.amazonaws.com/p/f.bin", version_id="v1", file_hash=H, bucket="b",
                  key="p/f.bin", relative_path="f.bin", size=100)


def test_ranges_merge_and_cover():
    assert merge([(50, 60), (0, 10), (10, 20), (55, 70)]) == [[0, 20], [50, 70]]
    assert covered([[0, 20]], 5, 20) and not covered([[0, 20], [21, 30]], 15, 25)


def test_sidecar_round_trip_and_rejections(tmp_path):
    store = Store(tmp_path / "cache")
    store.make_dir(store.partial_dir)
    store.partial_path(H).write_bytes(b"\0" * 100)
    write_sidecar(store, ENTRY, 100, [[0, 10], [5, 40]])
    assert read_sidecar(store, ENTRY)["done"] == [[0, 40]]
    other = FileEntry(**{**ENTRY.__dict__, "version_id": "v2"})
    assert read_sidecar(store, other) is None  # another version of the object: start over
    store.partial_path(H).write_bytes(b"\0" * 99)
    assert read_sidecar(store, ENTRY) is None  # the partial file is not the size recorded
    store.partial_path(H).write_bytes(b"\0" * 100)
    state = json.loads(store.sidecar_path(H).read_text())
    assert state["format"] == SIDECAR_FORMAT
    store.sidecar_path(H).write_text(json.dumps({**state, "done": [[0, 500]]}))
    assert read_sidecar(store, ENTRY)["done"] == []  # ranges beyond the file are dropped


def test_retry_policy_retries_transients_then_gives_up():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransientRemoteError("try again")
        return "ok"

    policy = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.001)
    assert policy.call(flaky, what="x") == "ok" and len(calls) == 3
    with pytest.raises(DownloadError, match="gave up after 2 attempts"):
        RetryPolicy(2, 0.001, 0.001).call(lambda: (_ for _ in ()).throw(TransientRemoteError("no")), what="x")
    with pytest.raises(RemoteError):  # not transient: no retry
        policy.call(lambda: (_ for _ in ()).throw(RemoteError("denied")), what="x")


def test_retry_after_wins_and_cancel_stops():
    exc = TransientRemoteError("slow down")
    exc.retry_after = 7.0
    assert RetryPolicy().delay(1, exc) == 7.0
    assert 0.1 <= RetryPolicy(backoff_base=0.2).delay(1, TransientRemoteError("x")) <= 0.2
    assert RetryPolicy(backoff_base=1, backoff_max=3).delay(10, TransientRemoteError("x")) <= 3
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        RetryPolicy().call(lambda: 1, what="x", cancel=cancel)


def test_transfer_config_describes_its_retry_policy():
    config = TransferConfig(max_attempts=4, backoff_base=0.5, backoff_max=2.0)
    assert config.retry == RetryPolicy(4, 0.5, 2.0)
    with pytest.raises(ValueError):
        TransferConfig(part_size=1024)
