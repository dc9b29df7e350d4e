"""Shared helpers of the reliability tests (tests/test_reliability_*.py)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from releasecache import CloudCache, OutdatedManifestWarning, TransferConfig
from tests.support.s3server import publish_fixture

BULK = "bulk-release"
_bulk_names = (f"bulk-bucket-{i}" for i in itertools.count())
FAST_RETRY = dict(backoff_base=0.01, backoff_max=0.05)


def build_bulk_release(root: Path, *, files: int = 14, seed: int = 7) -> dict[str, Path]:
    """Two versions of a release with a dozen data files of 100-300 kB each.

    0.2.0 changes half the data files and one CSV, and adds two files, so the two
    versions share some blobs and each has blobs of its own.
    """
    rng = random.Random(seed)
    sizes = [rng.randrange(100_000, 300_000) for _ in range(files)]
    v1: dict[str, bytes] = {
        f"{BULK}/project_metadata/sessions.csv": b"id,file_id\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(files)),
        f"{BULK}/project_metadata/units.csv": b"id,value\n" + b"".join(b"%d,%d\n" % (i, i * 3) for i in range(50)),
    }
    ids: dict[str, str] = {}
    for i, size in enumerate(sizes):
        key = f"{BULK}/sessions/{i:03d}/data_{i:03d}.dat"
        v1[key] = random.Random(seed * 1000 + i).randbytes(size)
        ids[str(i)] = key
    v2 = dict(v1)
    v2[f"{BULK}/project_metadata/units.csv"] = v1[f"{BULK}/project_metadata/units.csv"] + b"999,1\n"
    ids2 = dict(ids)
    for i in range(0, files, 2):
        v2[ids[str(i)]] = random.Random(seed * 2000 + i).randbytes(sizes[i] + 17)
    for i in range(files, files + 2):
        key = f"{BULK}/sessions/{i:03d}/data_{i:03d}.dat"
        v2[key] = random.Random(seed * 3000 + i).randbytes(150_000)
        ids2[str(i)] = key
    out: dict[str, Path] = {}
    for version, content, mapping in (("0.1.0", v1, ids), ("0.2.0", v2, ids2)):
        base = root / version
        for key, data in content.items():
            (base / key).parent.mkdir(parents=True, exist_ok=True)
            (base / key).write_bytes(data)
        (base / "file_ids.json").write_text(json.dumps(mapping))
        out[version] = base
    return out


@pytest.fixture(scope="module")
def bulk_bucket(s3_server, tmp_path_factory) -> SimpleNamespace:
    """The two-version bulk release, published into a bucket of its own."""
    bucket = next(_bulk_names)
    manifests = publish_fixture(s3_server, bucket, BULK, build_bulk_release(tmp_path_factory.mktemp("bulk")),
                                record_size=True)
    return SimpleNamespace(bucket=bucket, project=BULK, manifests=manifests, names=[m.name for m in manifests],
                           endpoint_url=s3_server.endpoint_url)


def settings(cache_dir: Path, bucket: SimpleNamespace, endpoint: str, manifest: str | None, **extra: Any) -> dict:
    """Worker settings (see tests.support.workers)."""
    return {"cache_dir": str(cache_dir), "bucket": bucket.bucket, "project": bucket.project,
            "endpoint_url": endpoint, "manifest": manifest, **extra}


def open_cache(cache_dir: Path, bucket: SimpleNamespace, endpoint: str | None = None, manifest: str | None = None,
               *, s3_options: dict | None = None, **kwargs: Any) -> CloudCache:
    transfer = {"part_size": 64 * 1024, "max_parts_in_flight": 4, "window": 6, **FAST_RETRY,
                **kwargs.pop("transfer", {})}
    cache = CloudCache.from_s3(cache_dir, bucket.bucket, bucket.project, endpoint_url=endpoint or bucket.endpoint_url,
                               transfer_config=TransferConfig(**transfer), progress=False,
                               s3_options=s3_options or {"connect_timeout": 2}, **kwargs)
    if manifest is not None:
        load(cache, manifest)
    return cache


def load(cache: CloudCache, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        cache.load_manifest(name)


def blake(path: str | os.PathLike[str]) -> str:
    return hashlib.blake2b(Path(path).read_bytes()).hexdigest()


def snapshot(root: Path, *, exclude: Path | None = None) -> dict[str, tuple]:
    """Every path below ``root`` with its type, size, mtime, mode and link target (no link followed)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if exclude is not None and Path(dirpath) == exclude.parent:
            dirnames[:] = [d for d in dirnames if Path(dirpath) / d != exclude]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if exclude is not None and path == exclude:
                continue
            st = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns,
                                                stat.S_IMODE(st.st_mode), target,
                                                blake(path) if stat.S_ISREG(st.st_mode) else None)
    return out


def make_outside(root: Path) -> Path:
    """A directory of files that the cache must never touch."""
    outside = root / "outside"
    (outside / "nested").mkdir(parents=True)
    (outside / "passwd").write_text("root:x:0:0\n")
    (outside / "nested" / "victim.dat").write_bytes(b"precious" * 100)
    return outside


def view_problems(cache: CloudCache) -> list[str]:
    """Views of the loaded manifest that exist but are wrong; blobs whose name is not their hash."""
    problems = []
    for entry in cache.manifest.entries():
        path = cache.store.view_path(cache.manifest.view_dir_name, entry.relative_path)
        if not os.path.lexists(path):
            continue
        if not os.path.exists(path):
            problems.append(f"{entry.relative_path}: dangling link {os.readlink(path)}")
        elif blake(path) != entry.file_hash:
            problems.append(f"{entry.relative_path}: wrong content")
    for h, blob in cache.store.iter_blobs():
        if blake(blob) != h:
            problems.append(f"blob {h[:16]}: content does not match its name")
    return problems


REPO_ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """``python -m tests.support.workers`` in a subprocess, with line-by-line output."""

    def __init__(self, settings: dict[str, Any], **popen: Any) -> None:
        env = dict(popen.pop("env", None) or os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO_ROOT))
        popen.setdefault("cwd", REPO_ROOT)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.workers", json.dumps(settings)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)
        self.lines: list[str] = []
        self._got = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._got:
                self.lines.append(line.strip())
                self._got.notify_all()
        with self._got:
            self._got.notify_all()

    def wait_for_line(self, text: str, timeout: float = 60.0) -> bool:
        with self._got:
            return self._got.wait_for(lambda: any(text in l for l in self.lines) or self.proc.poll() is not None,
                                      timeout) and any(text in l for l in self.lines)

    def finish(self, timeout: float = 120.0) -> list[str]:
        self.proc.wait(timeout)
        self._reader.join(10)
        return self.lines

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr else ""


def run_worker(settings: dict[str, Any], timeout: float = 120.0, **popen: Any) -> dict[str, Any]:
    """Run a worker to the end and return its last output line parsed as JSON."""
    w = Worker(settings, **popen)
    lines = w.finish(timeout)
    assert lines, f"worker printed nothing; stderr: {w.stderr()[-3000:]}"
    return json.loads(lines[-1])
