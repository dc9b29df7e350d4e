"""Every default and every ``RELEASECACHE_*`` environment variable, in one place.

Modules read their defaults from here, so a default changes in one line and
``grep RELEASECACHE_ config.py`` lists every variable the package honours.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

# -- the reference release ------------------------------------------------------------

#: The public bucket of the Visual Behavior Neuropixels release.
DEFAULT_BUCKET = "visual-behavior-neuropixels-data"
#: Its project name: the key prefix in the bucket and the manifests' prefix.
DEFAULT_PROJECT = "visual-behavior-neuropixels"
#: Region written into object URLs by ``publish``.
DEFAULT_REGION = "us-west-2"

# -- limits and timings -----------------------------------------------------------------

#: Largest manifest accepted, in bytes. The real VBN manifest (4,298 entries) is ~1.5 MB.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
#: Seconds to wait for another process's download of the same blob.
DEFAULT_LOCK_TIMEOUT = 3600.0
#: Seconds a soft lock survives without its holder's heartbeat.
DEFAULT_LOCK_LEASE = 120.0
#: Partial downloads untouched this many days are removed by ``gc``.
DEFAULT_PARTIAL_AGE_DAYS = 7.0
#: Lock kind when neither the argument nor ``RELEASECACHE_LOCK_KIND`` says.
DEFAULT_LOCK_KIND = "auto"
#: gc keeps the files of every manifest anybody used within this many days.
DEFAULT_GC_WINDOW_DAYS = 30.0
#: What a cache checks when it hands out a file it already has: never, fast, full.
DEFAULT_INTEGRITY = "never"
#: Seconds to open a connection to the remote.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds a connection may send nothing (no answer yet, or a stalled body) before it is abandoned.
DEFAULT_READ_TIMEOUT = 10.0
#: Seconds without any answer from the remote (refused, DNS failure, timeouts) after which a
#: download run stops with one error instead of retrying every file.
DEFAULT_UNREACHABLE_AFTER = 10.0
#: Seconds between two writes of one manifest's usage stamp (the size budget's LRU clock).
DEFAULT_USAGE_INTERVAL = 3600.0

# -- environment variables ------------------------------------------------------------------

ENV_CACHE_DIR = "RELEASECACHE_CACHE_DIR"
ENV_BUCKET = "RELEASECACHE_BUCKET"
ENV_PROJECT = "RELEASECACHE_PROJECT"
ENV_ENDPOINT_URL = "RELEASECACHE_ENDPOINT_URL"
ENV_HTTP_URL = "RELEASECACHE_HTTP_URL"
ENV_MIRROR = "RELEASECACHE_MIRROR"
ENV_OFFLINE = "RELEASECACHE_OFFLINE"
ENV_SIGNED = "RELEASECACHE_SIGNED"
ENV_PROFILE = "RELEASECACHE_PROFILE"
ENV_LAYERS = "RELEASECACHE_LAYERS"
#: A JSON-lines file to which every file use is appended (see :mod:`releasecache.cache.record`).
ENV_USAGE_LOG = "RELEASECACHE_USAGE_LOG"
#: The default size budget of a cache's blobs (see :mod:`releasecache.cache.budget`).
ENV_MAX_SIZE = "RELEASECACHE_MAX_SIZE"
#: ``posix`` or ``soft`` per-blob locks (see :mod:`releasecache.store.locks`).
ENV_LOCK_KIND = "RELEASECACHE_LOCK_KIND"
#: gc's usage window in days (see :mod:`releasecache.cache.gc`).
ENV_GC_WINDOW_DAYS = "RELEASECACHE_GC_WINDOW_DAYS"
#: ``never``, ``fast`` or ``full``: the integrity-on-open policy (see :mod:`releasecache.cache.fetch`).
ENV_INTEGRITY = "RELEASECACHE_INTEGRITY"
#: A size budget for the blob store, e.g. ``400GB`` (see :mod:`releasecache.cache.budget`).
ENV_MAX_SIZE = "RELEASECACHE_MAX_SIZE"


def env(name: str) -> str | None:
    """The value of one of the variables above, or None if unset or empty."""
    return os.environ.get(name) or None
