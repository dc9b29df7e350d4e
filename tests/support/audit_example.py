"""The worked example of ``docs/auditing.md``, run for real: ``python -m tests.support.audit_example [WORKDIR]``.

Publishes the three-version fixture release to a loopback S3 server, runs
each command of the page with the installed ``releasecache`` and prints it with
its output (standard error and standard output, in order) as Markdown code
blocks, so the page shows what the commands really print.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from releasecache.config import DEFAULT_BUCKET, DEFAULT_PROJECT
from releasecache.manifest import manifest_name
from tests.support.fixtures.vbn import build_vbn_release
from tests.support.s3server import S3Server, publish_fixture

E1 = "behavior_ecephys_sessions/1044385384/ecephys_session_1044385384.nwb"
E1_LFP = "behavior_ecephys_sessions/1044385384/probe_probeA_lfp.nwb"

SCRIPT = """\
import os
from releasecache import CloudCache
from releasecache.audit import audit_manifests

cache = CloudCache.from_s3("cache", "visual-behavior-neuropixels-data", "visual-behavior-neuropixels",
                           endpoint_url=os.environ["RELEASECACHE_ENDPOINT_URL"], progress=False)
diff = audit_manifests(cache, "0.1.0", "0.2.0")
units = diff.tables["units"]                     # computed now, from the cache
print(units.columns_frame()[["rows", "old_dtype", "new_dtype"]])
print(units.to_frame().head(3))
nwb = diff.files["behavior_ecephys_sessions/1044385384/ecephys_session_1044385384.nwb"]
print(nwb.to_frame())
"""

COMMANDS = [
    "releasecache manifests",
    "releasecache diff 0.1.0 0.2.0",
    "releasecache diff 0.1.0 0.2.0 --rows",
    f"releasecache diff 0.1.0 0.2.0 --file {E1} --stream --nwb-path units",
    f"releasecache diff 0.1.0 0.2.0 --file {E1} --stream --no-values",
    f"releasecache diff 0.2.0 0.3.0 --rows --file {E1} --file {E1_LFP}",
    "releasecache --offline diff 0.2.0 0.3.0 --rows channels --markdown",
    "releasecache --offline diff 0.1.0 0.2.0 --rows units --json",
    "cat audit.py",
    "python audit.py",
    "releasecache download --version 0.1.0",
    "releasecache download --version 0.3.0 --session 1044385384 --write-record lock.json",
    "releasecache record check lock.json",
    "releasecache --cache-dir elsewhere download --record lock.json",
    "releasecache --cache-dir elsewhere --offline record check lock.json --no-server",
    "releasecache du",
    "releasecache pin",
    "releasecache evict --max-size 8.5MB",
    "releasecache evict --max-size 8.5MB --delete",
    "releasecache --max-size 8.5MB download --version 0.3.0",
    "releasecache du",
    "releasecache manifests --check",
]


def _run(command: str, cwd: Path, env: dict[str, str], *, json_lines: int = 40) -> str:
    out = subprocess.run(shlex.split(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=300)
    text = out.stdout.rstrip("\n")
    if "--json" in command and text.count("\n") > json_lines:
        text = "\n".join(text.splitlines()[:json_lines]) + "\n  ..."
    status = f"\n[exit code {out.returncode}]" if out.returncode else ""
    return f"$ {command}\n{text}{status}"


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="vbn-audit-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    release = build_vbn_release(work / "release")
    (work / "audit.py").write_text(SCRIPT)
    with S3Server() as server:
        manifests = publish_fixture(server, DEFAULT_BUCKET, DEFAULT_PROJECT, release)
        bin_dir = Path(sys.executable).parent
        env = dict(os.environ, RELEASECACHE_ENDPOINT_URL=server.endpoint_url,
                   RELEASECACHE_CACHE_DIR=str(work / "cache"), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                   COLUMNS="120")
        env.pop("RELEASECACHE_MAX_SIZE", None)
        for command in COMMANDS:
            print("```console")
            print(_run(command, work, env).replace(str(work) + "/", "").replace(server.endpoint_url, "http://127.0.0.1:PORT"))
            print("```\n")
        # A release that contradicts itself: 0.4.0 lists 0.3.0's units.csv version id with another hash.
        raw = json.loads(manifests[-1].to_json())
        raw["manifest_version"] = "0.4.0"
        raw["metadata_files"]["units"]["file_hash"] = "0" * 128
        name = manifest_name(DEFAULT_PROJECT, "0.4.0")
        server.admin_client().put_object(Bucket=DEFAULT_BUCKET, Key=f"{DEFAULT_PROJECT}/manifests/{name}",
                                         Body=json.dumps(raw, indent=1).encode())
        for command in ("releasecache diff 0.3.0 0.4.0", "releasecache manifests --check"):
            print("```console")
            print(_run(command, work, env).replace(str(work) + "/", "").replace(server.endpoint_url, "http://127.0.0.1:PORT"))
            print("```\n")


if __name__ == "__main__":
    main()
