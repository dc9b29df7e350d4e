"""boto3 reference: download_file (s3transfer, its default 10 threads per file) for each key, one file
after the other, anonymous, path-style against the loopback endpoint. Verifies nothing.

Usage: python worker_boto3.py '<json request>'   (prints one JSON line)
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def main() -> None:
    req = json.loads(sys.argv[1])
    t_imp = time.perf_counter()
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore import UNSIGNED
    from botocore.config import Config

    import_seconds = time.perf_counter() - t_imp
    t0 = time.perf_counter()
    client = boto3.client("s3", endpoint_url=req["endpoint"], region_name="us-west-2",
                          config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"},
                                        max_pool_connections=16))
    config = TransferConfig()  # the defaults people get
    dest = req["dest"]
    total = 0
    for item in req["objects"]:
        path = os.path.join(dest, item["key"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        extra = {"VersionId": item["version_id"]} if req.get("send_version_id") else None
        client.download_file(req["bucket"], item["key"], path, ExtraArgs=extra, Config=config)
        total += os.path.getsize(path)
    t1 = time.perf_counter()
    print(json.dumps({"seconds": t1 - t0, "bytes": total, "import_seconds": import_seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
