"""Warnings name the user's line; in a worker thread with no user code on its stack, the package's line."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from releasecache.errors import PublisherWarning
from releasecache.manifest import consistency


def test_at_the_callers_line_and_not_swallowed():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("default")
        for _ in range(2):
            consistency.warn(["version 1.0.0 was published twice"])  # the same text at the same line, twice
    assert [Path(w.filename).name for w in record] == [Path(__file__).name] * 2
    assert all(issubclass(w.category, PublisherWarning) for w in record)


def test_in_a_worker_thread():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(1) as pool:
            pool.submit(consistency.warn, ["from a worker"]).result()
    assert [Path(w.filename).name for w in record] == ["consistency.py"]
