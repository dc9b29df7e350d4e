"""The on-disk layout: blobs, views, the one ingest path, the one link fallback, locks, stamps, layers."""

from .store import HASH_ALGO, Store

__all__ = ["HASH_ALGO", "Store"]
