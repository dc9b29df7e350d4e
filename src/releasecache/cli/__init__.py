"""The ``releasecache`` command: list, compare, download, check, adopt and publish releases.

Argument parsing only: every command calls the library (:class:`~releasecache.cache.CloudCache`,
:mod:`~releasecache.cache.prefetch`, :mod:`~releasecache.cache.adopt`, :mod:`~releasecache.cache.publish`,
:mod:`~releasecache.cache.record`, :mod:`~releasecache.cache.verify`). One module per command group;
:mod:`~releasecache.cli.app` holds the group, its global options and the exit codes.

Exit codes (stable; scripts may rely on them):

===  =====================================================================================
 0   success
 1   some files failed: a download failed, ``verify`` found corrupt files, ``adopt`` found
     files whose content does not match the manifest, ``diff --exit-code`` found changes
 2   usage error: bad option, unknown manifest, version, file id or session, wrong directory
 3   integrity or manifest error: an invalid or unsafe manifest, a hash or version mismatch
 4   network or remote error: unreachable, refused, or still failing after retries
 5   offline: the file is not in the cache and ``--offline`` forbids downloading it
 6   storage error: the cache directory cannot be written (permissions, full disk), lock timeout
 70  internal error (a bug: please report it with the traceback printed)
 130 interrupted (Ctrl-C)
===  =====================================================================================

With ``--json`` a command prints one JSON document on standard output (also for
errors: ``{"error": {"type", "message", "exit_code"}}``); messages, warnings and
progress bars go to standard error.
"""

from __future__ import annotations

from . import adopt, budget, download, maintenance, manifests, publish, record  # noqa: F401 - each registers its commands
from .app import EXIT_CODES, cli, exit_code_for

__all__ = ["EXIT_CODES", "cli", "exit_code_for", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``releasecache`` command."""
    cli.main(args=argv, prog_name="releasecache", auto_envvar_prefix=None)
