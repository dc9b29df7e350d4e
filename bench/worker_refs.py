"""Python references of the network workloads; runs in the references' environment
(``bench/work/refs-venv``: boto3 with awscrt, remfile, fsspec, h5py, pynwb), one action per
process, one JSON line on stdout.

Actions:
  boto3    boto3's classic transfer client (s3transfer). ``tuned``: one TransferManager for all
           files, every file submitted at once, ``max_concurrency`` raised (its documented knob);
           defaults: ``download_file`` one file after the other, 10 threads, 8 MiB parts.
  crt      the CRT transfer client (``s3transfer.crt.CRTTransferManager`` over ``awscrt``), used
           directly because ``TransferConfig(preferred_transfer_client="crt")`` falls back to the
           classic client for an anonymous client. Defaults: the CRT's own throughput target;
           ``tuned``: a higher ``target_throughput`` (its documented knob).
  stream   W8: remfile + h5py + pynwb, or fsspec HTTP with its block cache, reading the units
           table, trials and stimulus intervals of a session NWB over HTTP.

Nothing here verifies content (the S3 references check sizes only).
Usage: python worker_refs.py '<json request>'
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

T_START = time.perf_counter()


def _client_kwargs(req: dict) -> dict:
    from botocore import UNSIGNED
    from botocore.config import Config

    return {"endpoint_url": req["endpoint"], "region_name": "us-west-2",
            "config": Config(signature_version=UNSIGNED, s3={"addressing_style": "path"},
                             max_pool_connections=req.get("pool", 64))}


def _paths(req: dict) -> list[tuple[str, str]]:
    out = []
    for key in req["keys"]:
        path = os.path.join(req["dest"], key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        out.append((key, path))
    return out


def action_boto3(req: dict) -> dict:
    import boto3
    from boto3.s3.transfer import TransferConfig

    t0 = time.perf_counter()
    client = boto3.client("s3", **_client_kwargs(req))
    files = _paths(req)
    if not req.get("tuned"):
        for key, path in files:
            client.download_file(req["bucket"], key, path, Config=TransferConfig())
    else:
        from s3transfer.manager import TransferConfig as S3TConfig
        from s3transfer.manager import TransferManager

        conc = req.get("concurrency", 32)
        with TransferManager(client, S3TConfig(max_request_concurrency=conc, max_io_queue_size=10000)) as tm:
            futures = [tm.download(req["bucket"], key, path) for key, path in files]
            for f in futures:
                f.result()
    return {"seconds": time.perf_counter() - t0, "bytes": sum(os.path.getsize(p) for _, p in files)}


def action_crt(req: dict) -> dict:
    import botocore.session
    from s3transfer.crt import BotocoreCRTRequestSerializer, CRTTransferManager, create_s3_crt_client

    t0 = time.perf_counter()
    session = botocore.session.Session()
    target = req.get("target_throughput")  # bytes/s; None: the CRT's own choice
    crt = create_s3_crt_client("us-west-2", crt_credentials_provider=None, target_throughput=target,
                               use_ssl=req["endpoint"].startswith("https"))
    serializer = BotocoreCRTRequestSerializer(session, _client_kwargs(req))
    files = _paths(req)
    with CRTTransferManager(crt, serializer) as tm:
        futures = [tm.download(req["bucket"], key, path) for key, path in files]
        for f in futures:
            f.result()
    return {"seconds": time.perf_counter() - t0, "bytes": sum(os.path.getsize(p) for _, p in files)}


def action_stream(req: dict) -> dict:
    """W8 references: the three tables of a session NWB read over HTTP."""
    import h5py
    import pynwb

    url = req["url"]
    kind = req["kind"]
    t0 = time.perf_counter()
    if kind == "remfile":
        import remfile

        fobj = remfile.File(url)
    elif kind == "fsspec":
        import fsspec

        fs = fsspec.filesystem("http")
        fobj = fs.open(url, "rb", cache_type="blockcache", block_size=req.get("block_size", 5 * 1024 * 1024))
    else:
        raise ValueError(kind)
    h5 = h5py.File(fobj, "r")
    io = pynwb.NWBHDF5IO(file=h5, mode="r", load_namespaces=True)
    nwb = io.read()
    t_open = time.perf_counter()
    # The units' scalar columns, as releasecache's get_units() returns (ragged columns not read).
    ragged = {c.name[: -len("_index")] for c in nwb.units.columns if c.name.endswith("_index")}
    units = nwb.units.to_dataframe(exclude=ragged)
    trials = nwb.trials.to_dataframe() if nwb.trials is not None else None
    stim = {name: iv.to_dataframe() for name, iv in (nwb.intervals or {}).items() if name != "trials"}
    t1 = time.perf_counter()
    out = {"seconds": t1 - t0, "open_seconds": t_open - t0, "units": int(len(units)),
           "trials": int(len(trials)) if trials is not None else 0,
           "stimulus_rows": int(sum(len(v) for v in stim.values()))}
    io.close()
    return out


ACTIONS = {"boto3": action_boto3, "crt": action_crt, "stream": action_stream}


def main() -> None:
    req = json.loads(sys.argv[1])
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    out = ACTIONS[req["action"]](req)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["process_seconds_so_far"] = time.perf_counter() - T_START
    print(json.dumps(out))


if __name__ == "__main__":
    main()
