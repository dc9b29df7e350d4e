"""docs/cli.md lists every command, option and environment variable the CLI has.

The options are read from click itself, the environment variables from the
package's source, so a new option or variable that is not documented fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from releasecache.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "cli.md").read_text()


def _commands(group: click.Command, path: tuple[str, ...] = ()):
    yield path, group
    if isinstance(group, click.Group):
        for name, sub in sorted(group.commands.items()):
            yield from _commands(sub, path + (name,))


def _row(path: tuple[str, ...]) -> str:
    """The line of the option table in docs/cli.md for one command.

    A row's first cell names the command in backticks: ```download```, or
    ```record` (`write`, the default)`` for a group's default subcommand.
    """
    label = " ".join(path) or "releasecache"
    rows = []
    for line in DOC.splitlines():
        if not line.startswith("| `"):
            continue
        words = re.findall(r"`([^`]+)`", line.split(" | ", 1)[0])
        if words and (words[0] == label or " ".join(words) == label):
            rows.append(line)
    assert len(rows) == 1, f"docs/cli.md has no (single) row for `{label}` in its option table: {rows}"
    return rows[0]


@pytest.mark.parametrize("path", [p for p, _ in _commands(cli)], ids=lambda p: " ".join(p) or "releasecache")
def test_every_option_is_listed(path):
    command = dict(_commands(cli))[path]
    row = _row(path)
    for param in command.params:
        if isinstance(param, click.Option):
            for flag in param.opts + param.secondary_opts:
                assert f"`{flag}" in row, f"{flag} of {' '.join(path) or 'releasecache'} is not in docs/cli.md"
        else:
            names = {param.name.upper(), (param.metavar or "").strip("[].")} - {""}
            assert any(name in row for name in names), f"argument {names} of {' '.join(path)} is not in docs/cli.md"


def test_every_environment_variable_is_listed():
    used = set()
    for path in (ROOT / "src" / "releasecache").rglob("*.py"):
        used |= set(re.findall(r"RELEASECACHE_[A-Z_]+[A-Z]", path.read_text()))
    assert used, "found no RELEASECACHE_* variables; has the source moved?"
    missing = sorted(v for v in used if f"`{v}`" not in DOC)
    assert not missing, f"docs/cli.md does not list {missing}"


def test_every_exit_code_is_listed():
    from releasecache.cli import app as cli_module

    codes = {value for name, value in vars(cli_module).items() if name.startswith("EXIT_") and isinstance(value, int)}
    table = re.findall(r"^\| (\d+) \|", DOC, flags=re.M)
    assert codes == {int(c) for c in table}


def test_each_kind_of_failure_gets_its_documented_code():
    """The exit-code table's rows, one representative error each (the row's words are checked too)."""
    import errno

    from releasecache import errors as E
    from releasecache.cli.app import exit_code_for

    table = {int(code): text for code, text in re.findall(r"^\| (\d+) \| (.*) \|$", DOC, flags=re.M)}
    cases = [
        (E.ManifestNotFoundError("no manifest 9.9.9"), 2, "unknown manifest"),
        (E.UnknownFileError("file id 7"), 2, "file id"),
        (E.UnknownSessionError("session 1"), 2, "session"),
        (E.InvalidArgumentError("cache_dir must be a path"), 2, "usage error"),
        (E.SourceLayoutError("not an AllenSDK cache"), 2, "`adopt` cannot read"),
        (E.ManifestParseError("not JSON"), 3, "invalid or unsafe manifest"),
        (E.UnsafePathError("../../etc"), 3, "unsafe manifest"),
        (E.IntegrityError("hash mismatch"), 3, "hash"),
        (E.RemoteError("refused"), 4, "network or remote"),
        (E.DownloadError("still failing"), 4, "after retries"),
        (E.OfflineError("not cached"), 5, "offline"),
        (E.StorageError(errno.ENOSPC, "disk full"), 6, "full disk"),
        (E.ReadOnlyCacheError(errno.EROFS, "read-only"), 6, "read-only cache"),
        (E.LockTimeoutError("waited"), 6, "lock timeout"),
        (RuntimeError("a bug"), 70, "internal error"),
    ]
    for exc, code, words in cases:
        assert exit_code_for(exc) == code, (type(exc).__name__, exit_code_for(exc), code)
        assert words in table[code], f"docs/cli.md's row for {code} does not mention {words!r}"
