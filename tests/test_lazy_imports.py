"""A warm start imports only what it needs: no boto3, NWB stack, xarray, dask or click.

Each check runs in a fresh interpreter (this test process has imported everything
already), against the loopback S3 server, with the cache filled beforehand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from releasecache import ProjectCache
from releasecache.remote.s3 import BOTO_ONLY_ENV

#: What a warm start must not import (each costs a fresh process 0.1-1 s).
HEAVY = ("boto3", "botocore", "s3transfer", "pynwb", "hdmf", "h5py", "xarray", "dask", "click", "tqdm")

SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("ignore")
    heavy = {heavy!r}
    loaded = lambda: sorted(m for m in heavy if m in sys.modules)
    out = {{}}
    from releasecache import ProjectCache
    out["import"] = loaded()
    cache = ProjectCache.from_s3({cache_dir!r}, endpoint_url={endpoint!r}, progress=False)
    out["from_s3"] = loaded()
    units = cache.get_unit_table()
    sessions = cache.get_ecephys_session_table()
    out["tables"] = loaded()
    out["rows"] = [len(units), len(sessions)]
    if {session!r}:
        session = cache.get_ecephys_session(int(sessions.index[0]))
        out["session_units"] = len(session.get_units())
        out["session"] = loaded()
    print(json.dumps(out))
""")


def _run(cache_dir, endpoint: str, *, session: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in BOTO_ONLY_ENV}
    code = SCRIPT.format(heavy=HEAVY, cache_dir=str(cache_dir), endpoint=endpoint, session=session)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_warm_start_imports_no_transport_nor_nwb_stack(tmp_path, vbn_bucket):
    cache_dir = tmp_path / "cache"
    warm = ProjectCache.from_s3(cache_dir, endpoint_url=vbn_bucket.endpoint_url, progress=False)
    expected = [len(warm.get_unit_table()), len(warm.get_ecephys_session_table())]  # now in the cache
    out = _run(cache_dir, vbn_bucket.endpoint_url, session=False)
    assert out["rows"] == expected
    assert out["import"] == out["from_s3"] == out["tables"] == []


def test_what_a_session_read_needs_is_imported_when_it_is_read(tmp_path, vbn_bucket):
    """The deferred imports still happen: downloading the NWB builds the S3 client, reading it imports h5py
    (units are read straight from their HDF5 group; pynwb only where that cannot)."""
    cache_dir = tmp_path / "cache"
    warm = ProjectCache.from_s3(cache_dir, endpoint_url=vbn_bucket.endpoint_url, progress=False)
    warm.get_unit_table(), warm.get_ecephys_session_table()
    out = _run(cache_dir, vbn_bucket.endpoint_url, session=True)
    assert out["tables"] == [] and out["session_units"] > 0
    assert {"boto3", "botocore", "h5py"} <= set(out["session"])
