"""An S3-compatible server on loopback (moto's standalone server) with a versioned,
public-read bucket: real HTTP, real S3 semantics, no network."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def public_read_policy(bucket: str) -> str:
    """A bucket policy that lets anyone GET any object (any version) and list the bucket."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
             "Action": ["s3:GetObject", "s3:GetObjectVersion"], "Resource": f"arn:aws:s3:::{bucket}/*"},
            {"Sid": "PublicList", "Effect": "Allow", "Principal": "*",
             "Action": ["s3:ListBucket", "s3:ListBucketVersions"], "Resource": f"arn:aws:s3:::{bucket}"},
        ],
    })


class S3Server:
    """moto's S3 server in a subprocess on ``127.0.0.1:<port>``.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "S3Server":
        env = dict(os.environ)
        # moto needs some credentials to sign its own admin calls; the data is public anyway.
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"S3 server exited: {self._log.read().decode(errors='replace')[-2000:]}")
            try:
                requests.get(self.endpoint_url + "/moto-api/", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"S3 server did not start on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def reset(self) -> None:
        """Forget every bucket and object."""
        requests.post(self.endpoint_url + "/moto-api/reset", timeout=10)

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def admin_client(self) -> Any:
        """A signed boto3 client (for creating buckets and uploading)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-west-2",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def create_public_bucket(self, bucket: str) -> None:
        """Create ``bucket`` with versioning on and a public-read policy."""
        client = self.admin_client()
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        client.put_bucket_policy(Bucket=bucket, Policy=public_read_policy(bucket))

    def publisher(self, bucket: str) -> Any:
        """A signed :class:`~releasecache.remote.s3.S3Remote` that can upload into ``bucket``."""
        from releasecache.remote.s3 import S3Remote

        return S3Remote(bucket, endpoint_url=self.endpoint_url, anonymous=False,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def publish_fixture(server: S3Server, bucket: str, project: str, versions: dict[str, Path], **kwargs: Any) -> list:
    """Create a public versioned bucket on ``server`` and publish every version into it."""
    from releasecache.cache.publish import publish_release

    server.create_public_bucket(bucket)
    return publish_release(server.publisher(bucket), project, versions, **kwargs)


__all__ = ["S3Server", "free_port", "public_read_policy", "publish_fixture", "Path"]
