"""store/locks.py in one process: both kinds exclude, name their holder, and refuse bad settings."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from releasecache.errors import LockTimeoutError
from releasecache.store import Store
from releasecache.store.locks import BlobLock, read_owner, resolve_lock_kind


@pytest.mark.parametrize("kind", ["posix", "soft"])
def test_lock_excludes_and_records_its_owner(tmp_path, kind):
    a = BlobLock(tmp_path / "h.lock", tmp_path / "h.owner", kind=kind)
    b = BlobLock(tmp_path / "h.lock", tmp_path / "h.owner", kind=kind)
    assert a.acquire(timeout=5)
    owner = read_owner(tmp_path / "h.owner")
    assert owner is not None and owner.pid == os.getpid() and owner.alive() is True
    assert b.acquire(blocking=False) is False  # held by another lock object, even in this process
    with pytest.raises(LockTimeoutError, match=str(os.getpid())):
        b.acquire(timeout=0.3)
    a.release()
    assert b.acquire(timeout=5)
    b.release()


def test_waiter_gets_the_lock_when_it_is_released(tmp_path):
    store = Store(tmp_path / "cache", lock_timeout=10)
    h = "ab" * 64
    order = []

    def waiter() -> None:
        with store.lock(h):
            order.append("waiter")

    with store.lock(h):
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.3)
        order.append("holder done")
    thread.join(10)
    assert order == ["holder done", "waiter"]


def test_try_lock_does_not_wait(tmp_path):
    store = Store(tmp_path / "cache")
    h = "cd" * 64
    with store.try_lock(h) as first:
        with store.try_lock(h) as second:
            assert first is True and second is False


def test_lock_kind_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv("RELEASECACHE_LOCK_KIND", "soft")
    assert resolve_lock_kind(None) == "soft" and resolve_lock_kind("posix") == "posix"
    monkeypatch.delenv("RELEASECACHE_LOCK_KIND")
    assert resolve_lock_kind(None) == "auto"  # probe the filesystem when the cache is opened
    with pytest.raises(ValueError):
        resolve_lock_kind("flock")


def test_owner_records_tell_running_gone_and_elsewhere(tmp_path):
    path = tmp_path / "x.owner"
    here = socket.gethostname()
    path.write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": here, "since": 0, "kind": "soft"}))
    assert read_owner(path).alive() is False and "no longer running" in read_owner(path).describe()
    path.write_text(json.dumps({"pid": 1, "host": "another-host", "since": 0, "kind": "soft"}))
    assert read_owner(path).alive() is None
    path.write_text("not json")
    assert read_owner(path) is None


def test_a_planted_symlink_lock_is_not_followed(tmp_path):
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "p.lease").symlink_to(tmp_path / "elsewhere")  # where a soft lock's marker goes
    lock = BlobLock(tmp_path / "p.lock", tmp_path / "p.owner", kind="soft")
    assert lock.lock_path == tmp_path / "p.lease"
    assert lock.acquire(timeout=5)  # the link is removed, never written through
    lock.release()
    assert (tmp_path / "elsewhere").read_text() == "" and not (tmp_path / "p.lease").is_symlink()
