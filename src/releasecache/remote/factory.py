"""The one way a remote is built: from a bucket (and endpoint), an HTTP URL, or a mirror directory.

``CloudCache.from_*``, ``ProjectCache`` and the command line all call
:func:`make_remote`, so a new kind of source, or a new connection default, is
added in one place.
"""

from __future__ import annotations

import os
from typing import Any

from .base import Remote
from .http import HttpRemote
from .local import LocalRemote
from .s3 import S3Remote


def pool_size(max_parts_in_flight: int) -> int:
    """Connections a remote needs so that every ranged part of a download can run at once."""
    return max(10, 2 * max_parts_in_flight)


def make_remote(*, bucket: str | None = None, endpoint_url: str | None = None, anonymous: bool = True,
                profile: str | None = None, http_url: str | None = None,
                mirror: str | os.PathLike[str] | None = None, max_parts_in_flight: int | None = None,
                s3_options: dict[str, Any] | None = None,
                http_options: dict[str, Any] | None = None) -> Remote:
    """Build the remote that the arguments name.

    Parameters
    ----------
    bucket, endpoint_url, anonymous, profile, s3_options
        An S3 bucket (the default kind), at a custom endpoint if given, unsigned
        unless ``anonymous=False``, with an AWS profile for signed requests.
    http_url, http_options
        Plain HTTP(S) from a public bucket URL or a web mirror (wins over ``bucket``).
    mirror
        A local directory laid out like the bucket (wins over both).
    max_parts_in_flight
        Size the connection pool for this many concurrent ranged parts.

    Raises
    ------
    ValueError
        If no source is named.
    """
    if mirror is not None:
        return LocalRemote(mirror)
    if http_url is not None:
        return HttpRemote(http_url, **(http_options or {}))
    if bucket is None:
        raise ValueError("make_remote needs a bucket, an http_url or a mirror")
    options = dict(s3_options or {})
    if profile is not None:
        options.setdefault("profile_name", profile)
    if max_parts_in_flight is not None:
        options["max_pool_connections"] = max(options.get("max_pool_connections", 0), pool_size(max_parts_in_flight))
    remote = S3Remote(bucket, endpoint_url=endpoint_url, anonymous=anonymous, **options)
    url = remote.listing_url()
    if url is not None:  # an unsigned listing is one plain GET: no boto3 client for it
        remote.lister = HttpRemote(url, pool_size=1, connect_timeout=remote.connect_timeout,
                                   read_timeout=remote.read_timeout, request_timeout=remote.request_timeout,
                                   ca_bundle=os.environ.get("AWS_CA_BUNDLE") or None)
    return remote
