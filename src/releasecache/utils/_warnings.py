"""Warnings that point at the user's line and are not swallowed by Python's once-per-line registry."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

_PACKAGE_DIR = os.path.realpath(Path(__file__).parent.parent)
# Where a worker thread's stack begins: reaching one of these means no user code called us.
_THREAD_STARTERS = {"threading.py", "thread.py", "process.py"}


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue ``message`` at the first stack frame outside this package (the user's line).

    Python's default filter shows a warning once per (text, line) and keeps the
    record in the calling module's registry, so a second cache object warning
    about the same manifests at the same line would stay silent. Callers here
    decide themselves when a warning is due (e.g. once per cache and latest
    manifest); a fresh registry per call makes Python show every one of them,
    while ``warnings.filterwarnings`` and ``catch_warnings`` still apply.
    """
    frame = sys._getframe(1)
    while frame is not None and os.path.realpath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back
    if frame is None or os.path.basename(frame.f_code.co_filename) in _THREAD_STARTERS:
        # no user line in this thread (a worker the package started): say where in the package instead
        warnings.warn(message, category, stacklevel=2)
        return
    module = frame.f_globals.get("__name__", "<unknown>")
    warnings.warn_explicit(message, category, frame.f_code.co_filename, frame.f_lineno, module=module,
                           registry={})
