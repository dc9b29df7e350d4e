"""A cache shared by the users of one group (issue 11, item 1; issue 10, item 12).

Every test runs ``releasecache`` as real other uids (``setpriv``, see
:mod:`tests.support.users`): alice and bob are in the lab group, carol is not.
The recipe under test (docs/clusters.md): the cache directory belongs to the
lab group and is setgid and group-writable (``chgrp lab DIR; chmod 2775 DIR``),
and every user works with ``umask 002``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.users import ALICE, BOB, CAROL, LAB_GID, can_switch_users, lab_directory, shared_tmp

from ._reliability import blake, settings


@pytest.fixture
def place():
    why = can_switch_users()
    if why is not None:
        pytest.skip(f"no second uid here: {why}")
    root = shared_tmp()
    try:
        yield SimpleNamespace(root=root, homes={u.name: root / "home" / u.name for u in (ALICE, BOB, CAROL)})
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _fetch(user, place, cache_dir: Path, bucket, manifest: str, *, ids=None, umask=0o002, **extra):
    s = settings(cache_dir, bucket, bucket.endpoint_url, manifest, action="fetch",
                 transfer={"part_size": 64 * 1024, "max_parts_in_flight": 4}, **extra)
    m = {x.name: x for x in bucket.manifests}[manifest]
    s["ids"] = list(m.data_files) if ids is None else ids
    s["metadata"] = list(m.metadata_files)
    return user.worker(s, home=place.homes[user.name], umask=umask)


def _complaints(result) -> list[str]:
    """Errors a worker reported, and any permission trouble it logged."""
    text = result["stderr"].lower()
    noise = [line for line in text.splitlines() if "permission" in line or "errno 13" in line]
    return result["errors"] + noise


def _tree(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        yield Path(dirpath), True
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            if not (p.is_dir() and not p.is_symlink()):
                yield p, False


def _modes_off(cache: Path, *, dirs: int, files: int) -> list[str]:
    """Every non-link under ``cache`` whose mode is not ``dirs`` / ``files`` (blobs: read-only 0444)."""
    wrong = []
    for path, is_dir in _tree(cache):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        want = dirs if is_dir else (0o444 if path.relative_to(cache).parts[0] == "blobs" else files)
        if stat.S_IMODE(st.st_mode) != want:
            wrong.append(f"{path.relative_to(cache)}: {stat.S_IMODE(st.st_mode):o}, not {want:o}")
    return wrong


def test_group_shared_cache_filled_by_two_users_never_locks_either_out(place, toy_bucket):
    """alice fills part of a version, bob reads it and adds the rest and a second version, alice then
    uses bob's files; gc and a full verify by either work on the other's files. No permission error,
    ever; afterwards every directory is the lab group's, setgid and group-writable, every blob is
    read-only for everyone, and every other file is group read-write (umask 002)."""
    cache = lab_directory(place.root / "lab-cache")
    v1, v2 = toy_bucket.names[0], toy_bucket.names[1]
    first = list({m.name: m for m in toy_bucket.manifests}[v1].data_files)
    a = _fetch(ALICE, place, cache, toy_bucket, v1, ids=first[: len(first) // 2])
    assert _complaints(a) == [] and a["files"] > 0
    b = _fetch(BOB, place, cache, toy_bucket, v1)
    assert _complaints(b) == []
    b2 = _fetch(BOB, place, cache, toy_bucket, v2)
    assert _complaints(b2) == []
    a2 = _fetch(ALICE, place, cache, toy_bucket, v2)
    assert _complaints(a2) == []

    owners = {p.lstat().st_uid for p, _ in _tree(cache)}
    assert {ALICE.uid, BOB.uid} <= owners  # both really wrote into it
    cli = ["--cache-dir", str(cache), "--bucket", toy_bucket.bucket, "--project", toy_bucket.project,
           "--endpoint-url", toy_bucket.endpoint_url]
    done = ALICE.cli(*cli, "verify", "--full", "--json", home=place.homes["alice"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["ok"] and report["permissions"] == [], report
    done = BOB.cli(*cli, "gc", "--keep", v2, "--window-days", "0", "--delete", "--json", home=place.homes["bob"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["deleted_blobs"], "gc had nothing of alice's to delete; the test is void"
    assert "permission" not in done.stderr.lower(), done.stderr[-3000:]

    problems = []
    for path, is_dir in _tree(cache):
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode)
        rel = path.relative_to(cache)
        if stat.S_ISLNK(st.st_mode):
            continue
        if is_dir:
            if st.st_gid != LAB_GID or mode & 0o2070 != 0o2070:
                problems.append(f"dir {rel}: gid {st.st_gid} mode {mode:o}")
        elif rel.parts[0] == "blobs":
            if mode != 0o444 or st.st_gid != LAB_GID:
                problems.append(f"blob {rel}: gid {st.st_gid} mode {mode:o}")
        elif mode & 0o060 != 0o060 or st.st_gid != LAB_GID:
            problems.append(f"file {rel}: gid {st.st_gid} mode {mode:o}")
    assert problems == []
    ok = _fetch(ALICE, place, cache, toy_bucket, v2)
    assert _complaints(ok) == []


def test_verify_reports_modes_that_lock_group_members_out_and_fix_repairs(place, toy_bucket):
    """alice works with umask 077 in the lab cache: bob can no longer use what she wrote.
    ``releasecache verify`` names those files (and exits 1); ``verify --fix`` run by her repairs
    them (and names what only another owner can fix); bob then uses everything."""
    cache = lab_directory(place.root / "lab-cache")
    v1 = toy_bucket.names[0]
    a = _fetch(ALICE, place, cache, toy_bucket, v1, umask=0o077)
    assert _complaints(a) == []
    locked_out = _fetch(BOB, place, cache, toy_bucket, v1)
    assert locked_out["errors"], "umask 077 did not lock bob out; the test proves nothing"

    cli = ["--cache-dir", str(cache), "--bucket", toy_bucket.bucket, "--project", toy_bucket.project,
           "--endpoint-url", toy_bucket.endpoint_url]
    done = ALICE.cli(*cli, "verify", "--json", home=place.homes["alice"])
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    flagged = {rec["path"] for rec in report["permissions"]}
    assert "manifests" in flagged and any(p.startswith("blobs/") for p in flagged), sorted(flagged)[:20]
    assert all(rec["owner"] == ALICE.uid and rec["problem"] for rec in report["permissions"])

    done = BOB.cli(*cli, "verify", "--fix", "--json", home=place.homes["bob"])
    assert done.returncode == 1, done.stderr[-3000:]  # bob owns none of them: nothing fixed
    assert json.loads(done.stdout)["permissions_fixed"] == []

    done = ALICE.cli(*cli, "verify", "--fix", "--json", home=place.homes["alice"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    fixed = json.loads(done.stdout)
    assert set(fixed["permissions_fixed"]) == flagged and fixed["permissions"] == []
    b = _fetch(BOB, place, cache, toy_bucket, v1)
    assert _complaints(b) == []
    done = ALICE.cli(*cli, "verify", "--json", home=place.homes["alice"])
    assert done.returncode == 0 and json.loads(done.stdout)["permissions"] == []


def test_every_file_gets_umask_permissions_and_another_user_reads_the_cache(place, toy_bucket):
    """alice's own cache (umask 022): every file the cache writes is 0644 (blobs 0444), every
    directory 0755. bob, in her group, opens it read-only (he cannot write there) and gets every
    file without a download; then he uses it as a read-only layer under a cache of his own and gets
    every file linked from it, nothing downloaded. carol, outside the group, reads it too (o+r)."""
    home = place.homes["alice"]
    home.mkdir(parents=True)
    os.chown(home, ALICE.uid, ALICE.gid)
    cache = home / "cache"
    v1 = toy_bucket.names[0]
    a = _fetch(ALICE, place, cache, toy_bucket, v1, umask=0o022)
    assert _complaints(a) == []
    assert _modes_off(cache, dirs=0o755, files=0o644) == []
    assert (cache / "state").exists() and any((cache / "manifests").iterdir())

    before = {p: p.lstat().st_mtime_ns for p, _ in _tree(cache)}
    for user in (BOB, CAROL):  # a read-only cache cannot download: every file must come from alice's
        r = user.worker({**settings(cache, toy_bucket, toy_bucket.endpoint_url, v1, action="fetch"),
                         "ids": list({m.name: m for m in toy_bucket.manifests}[v1].data_files),
                         "metadata": list({m.name: m for m in toy_bucket.manifests}[v1].metadata_files),
                         "cache_options": {"read_only": True}}, home=place.homes[user.name])
        assert _complaints(r) == [] and r["files"] > 0, (user.name, r["errors"], r["stderr"][-2000:])
    assert {p: p.lstat().st_mtime_ns for p, _ in _tree(cache)} == before  # nothing written by them

    mine = place.homes["bob"] / "cache"
    r = BOB.worker({**settings(mine, toy_bucket, toy_bucket.endpoint_url, v1, action="fetch"),
                    "ids": list({m.name: m for m in toy_bucket.manifests}[v1].data_files),
                    "metadata": list({m.name: m for m in toy_bucket.manifests}[v1].metadata_files),
                    "cache_options": {"layers": [str(cache)]}}, home=place.homes["bob"])
    assert _complaints(r) == [] and r["files"] > 0
    assert not any((mine / "blobs").rglob("*")) if (mine / "blobs").exists() else True
    view = next(p for p in mine.iterdir() if p.is_dir() and p.name.startswith(toy_bucket.project))
    links = [p for p in view.rglob("*") if p.is_symlink()]
    assert links and all(os.readlink(p).startswith(str(cache)) for p in links)
    assert all(blake(p) for p in links)


def test_table_sidecars_and_records_follow_the_umask_and_another_user_reads_tables(place, vbn_bucket):
    """alice (umask 002) loads the metadata tables through ProjectCache: the columnar sidecars in
    ``.tables/`` and every other file are 0664 (blobs 0444); bob opens her cache read-only and
    loads the same tables (his process cannot write there)."""
    home = place.homes["alice"]
    home.mkdir(parents=True)
    os.chown(home, ALICE.uid, ALICE.gid)
    cache = home / "vbn"
    code = ("import sys\nfrom releasecache import ProjectCache\n"
            "c = ProjectCache.from_s3(sys.argv[1], endpoint_url=sys.argv[2], progress=False{extra})\n"
            "t = c.get_ecephys_session_table()\nprint(len(t))\n")
    done = ALICE.python(code.format(extra=""), str(cache), vbn_bucket.endpoint_url, home=home, umask=0o002)
    assert done.returncode == 0 and int(done.stdout.split()[-1]) > 0, done.stderr[-3000:]
    sidecars = list((cache / ".tables").iterdir())
    assert sidecars
    assert _modes_off(cache, dirs=0o775, files=0o664) == []
    os.chmod(home, 0o755)
    done = BOB.python(code.format(extra=", read_only=True"), str(cache), vbn_bucket.endpoint_url,
                      home=place.homes["bob"])
    assert done.returncode == 0 and int(done.stdout.split()[-1]) > 0, done.stderr[-3000:]
