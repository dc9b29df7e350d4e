"""The cache of one project's release: the :class:`CloudCache` facade and the operations it delegates to.

Each module takes the lower-level objects (a :class:`~releasecache.store.Store`,
a :class:`~releasecache.manifest.Manifest`, a cache) and does one job:
prefetch, record, verify, gc, du, adopt, publish.
"""

from .attributes import CacheFileAttributes
from .cloud import CloudCache

__all__ = ["CacheFileAttributes", "CloudCache"]
