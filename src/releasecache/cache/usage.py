"""Usage recording: which files one cache object handed out in this process, and how.

:func:`releasecache.cache.record.note_used` writes here (and to the usage log);
:meth:`CloudCache.used_files <releasecache.cache.CloudCache.used_files>` and the
reproducibility lock read from here.
"""

from __future__ import annotations

from typing import Any

#: A use is keyed by (manifest name or version, path in the release).
UseKey = tuple[str, str]


class UsageRecorder:
    """The uses of one cache object; a file both streamed and downloaded counts as downloaded."""

    def __init__(self) -> None:
        self._records: dict[UseKey, dict[str, Any]] = {}

    def wants(self, key: UseKey, *, streamed: bool) -> bool:
        """True if a use of ``key`` (``streamed`` or verified) adds to what is recorded."""
        previous = self._records.get(key)
        return previous is None or (previous["streamed"] and not streamed)

    def add(self, key: UseKey, record: dict[str, Any]) -> None:
        """Record one use (replacing a weaker one)."""
        self._records[key] = record

    def records(self) -> list[dict[str, Any]]:
        """Copies of every record, in the order first used."""
        return [dict(r) for r in self._records.values()]

    def __len__(self) -> int:
        return len(self._records)
