"""Small helpers with no knowledge of releases: atomic writes, hashing, units, short reprs.

The modules are private (``_atomic.py`` ...); their names are public here.
"""

from ._atomic import atomic_write, fsync_dir
from ._hashing import hash_bytes, hash_file, new_hasher
from ._perms import blob_mode, current_umask, file_mode
from ._text import short_repr
from ._units import human_bytes
from ._warnings import warn_user

__all__ = ["atomic_write", "blob_mode", "current_umask", "file_mode", "fsync_dir", "hash_bytes", "hash_file", "human_bytes",
           "new_hasher", "short_repr", "warn_user"]
