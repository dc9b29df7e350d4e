"""The permissions a new file gets: what the process's umask allows, never less and never more."""

from __future__ import annotations

import os
import threading

_guard = threading.Lock()


def current_umask() -> int:
    """The process's umask, read from ``/proc`` where possible (setting it to read it races with threads)."""
    try:
        with open("/proc/self/status", "rb") as fh:  # bytes: no codec to import (a process may have dropped
            for line in fh:                          # to a uid that cannot read the interpreter's files)
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _guard:
        value = os.umask(0o022)
        os.umask(value)
    return value


def file_mode() -> int:
    """Mode for a new file (state, manifests, stamps, records, sidecars, partial downloads): ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def blob_mode() -> int:
    """Mode of a published blob: readable as the umask allows, writable by nobody (``0o444 & ~umask``)."""
    return 0o444 & ~current_umask()
