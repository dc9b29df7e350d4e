"""S3 through boto3: anonymous by default, pinned to version ids, ranged reads.

An anonymous listing of manifests (what every start does, to warn when a newer
manifest exists) is a plain ``GET ?list-type=2`` sent by the :attr:`S3Remote.lister`
that :func:`~releasecache.remote.make_remote` gives it (an ``HttpRemote``):
building a boto3 client costs a fresh process more than half a second, which a
warm start that lists and then reads only from the cache would pay for nothing.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Iterator
from urllib.parse import quote

from ..config import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, DEFAULT_REGION
from ..errors import (
    OFFLINE_HINT,
    EndpointUnreachableError,
    ReleaseCacheError,
    RemoteAccessError,
    RemoteError,
    RemoteNotFoundError,
    TransientRemoteError,
)
from .. import manifest as _manifest
from ..manifest import S3Location
from ._retry_codes import (
    DENIED_S3_CODES,
    NOT_FOUND_S3_CODES,
    RETRY_S3_CODES,
    RETRY_STATUSES,
    parse_content_range,
    parse_retry_after,
)
from ._deadline import DEFAULT_REQUEST_TIMEOUT, body_deadline
from ._direct import DirectBody
from .base import RangeNotSatisfiable, RangeResponse, Remote

CHUNK = 1024 * 1024
MAX_LISTED = 1_000_000  # keys listed at most: a listing that never ends must end
#: Settings boto3 would honour that a plain HTTP request would not: with any of them, boto3 lists.
BOTO_ONLY_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
                 "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT")
_BOTO_ONLY_CONFIG = re.compile(rb"endpoint|fips|dualstack|addressing_style|ca_bundle|accelerate", re.IGNORECASE)
_DNS_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


def _aws_config_overrides() -> bool:
    """True if the AWS config file may change where or how S3 is reached (then boto3 must decide)."""
    path = os.environ.get("AWS_CONFIG_FILE") or os.path.join(os.path.expanduser("~"), ".aws", "config")
    try:
        with open(path, "rb") as fh:
            return bool(_BOTO_ONLY_CONFIG.search(fh.read(1 << 20)))
    except OSError:
        return False


def _translate(exc: BaseException, what: str, **context: Any) -> RemoteError:
    """Turn a botocore/urllib3 exception into our hierarchy (``context``: url, key, version_id)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 0)
        headers = meta.get("HTTPHeaders", {}) or {}
        msg = f"{what}: {code or status} {err.get('Message', '')}".rstrip()
        context.update(status=status or None, code=code or None)
        if code in NOT_FOUND_S3_CODES or status == 404:
            return RemoteNotFoundError(msg).with_context(**context)
        if code in DENIED_S3_CODES or status in (401, 403):
            return RemoteAccessError(msg + " (the bucket may need credentials)").with_context(**context)
        if code in RETRY_S3_CODES or status in RETRY_STATUSES:
            return TransientRemoteError(msg, parse_retry_after(headers.get("retry-after"))).with_context(**context)
        if code == "InvalidRange" or status == 416:
            return RangeNotSatisfiable(msg).with_context(**context)
        if status in (301, 302, 303, 307, 308):
            where = err.get("Endpoint") or headers.get("location") or "another endpoint"
            return RemoteError(f"{msg}: the server redirects to {where}; redirects are not followed for S3 "
                               "requests, so point endpoint_url at the right endpoint").with_context(**context)
        return RemoteError(msg).with_context(**context)
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):  # refused, DNS failure, connect timeout
        return _unreachable(exc, what, **context)
    # Everything else from the transport (connection reset, timeouts, truncated
    # bodies, unparsable answers) is worth another try.
    return TransientRemoteError(f"{what}: {type(exc).__name__}: {exc}").with_context(**context)


def _unreachable(exc: BaseException, what: str, **context: Any) -> EndpointUnreachableError:
    return EndpointUnreachableError(f"{what}: no answer from the server ({type(exc).__name__}: {exc}); "
                                    f"{OFFLINE_HINT}").with_context(**context)


def _translate_request(exc: BaseException, what: str, **context: Any) -> RemoteError:
    """Like :func:`_translate`, for a request still waiting for its answer: a read
    timeout there means the server accepted the connection and never answered."""
    from botocore.exceptions import ReadTimeoutError

    if isinstance(exc, ReadTimeoutError):
        return _unreachable(exc, what, **context)
    return _translate(exc, what, **context)


class S3Remote(Remote):
    """Objects in an S3 bucket (or an S3-compatible endpoint).

    Parameters
    ----------
    bucket
        The bucket to read from. Keys come from the manifest URLs; their bucket
        is used only when this is None (so a mirror bucket can serve a manifest
        whose URLs name the original bucket).
    endpoint_url
        A custom S3 endpoint (MinIO, a local test server, a mirror). Path-style
        addressing is used with a custom endpoint.
    anonymous
        Sign nothing (public buckets). If False, boto3's usual credential chain
        applies, or the explicit keys / profile given here.
    region
        AWS region; the default suits the public VBN bucket.
    max_pool_connections
        Connections kept open for reuse; should be at least the transfer concurrency.
    connect_timeout, read_timeout
        Seconds. ``read_timeout`` is the stall timeout: a connection that sends no
        bytes for that long is abandoned and retried by the transfer layer.
    request_timeout
        Seconds one response body may take, plus one second per MiB it announces
        (None: no limit). It cuts off what ``read_timeout`` cannot see: a server
        that drips a byte at a time, or a body that never ends.
    """

    def __init__(
        self,
        bucket: str | None = None,
        *,
        endpoint_url: str | None = None,
        anonymous: bool = True,
        region: str | None = DEFAULT_REGION,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile_name: str | None = None,
        max_pool_connections: int = 32,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self.bucket = bucket
        self.request_timeout = request_timeout
        self.endpoint_url = endpoint_url
        self.anonymous = anonymous and aws_access_key_id is None and profile_name is None
        self.region = region
        self._credentials = (aws_access_key_id, aws_secret_access_key, aws_session_token)
        self.profile_name = profile_name
        self.max_pool_connections = max_pool_connections
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._client: Any = None
        self._lock = threading.Lock()
        #: Lists manifests with unsigned plain GETs while :meth:`listing_url` allows it (set by make_remote).
        self.lister: Remote | None = None

    # -- pickling: the client holds sockets; rebuild it on the other side -------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use (thread-safe)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        config = Config(
            signature_version=UNSIGNED if self.anonymous else None,
            max_pool_connections=self.max_pool_connections,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            # Our transfer layer retries with its own policy, uniformly for all remotes.
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"} if self.endpoint_url else None,
            # Every file is verified by its blake2b; a second (CRC) pass would only cost CPU.
            response_checksum_validation="when_required",
            request_checksum_calculation="when_required",
        )
        key, secret, token = self._credentials
        session = boto3.session.Session(
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            profile_name=self.profile_name,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def listing_url(self) -> str | None:
        """The bucket's URL for an unsigned ``GET ?list-type=2``, or None if only boto3 may list.

        Anonymous requests need no signing, so a plain GET is the same request
        boto3 would send: path-style below a custom endpoint, virtual-hosted on
        AWS (``AWS_CA_BUNDLE`` verifies it, as for boto3). boto3 lists when
        anything it would honour differs: credentials, an endpoint or a
        FIPS/dual-stack setting from the environment or the AWS config file, no
        region given, a bucket name that is not a plain DNS label.
        """
        if not self.anonymous or self.bucket is None or any(os.environ.get(k) for k in BOTO_ONLY_ENV):
            return None
        if self.endpoint_url:
            return f"{self.endpoint_url.rstrip('/')}/{quote(self.bucket)}"
        if self.region is None or not _DNS_BUCKET.fullmatch(self.bucket) or _aws_config_overrides():
            return None  # (without a region, boto3 finds it in the environment or the config)
        return f"https://{self.bucket}.s3.{self.region}.amazonaws.com"

    def ranged_reader(self) -> Remote:
        """The unsigned lister while :meth:`listing_url` allows it, else this remote.

        An anonymous ranged GET of ``<bucket url>/<key>?versionId=<id>`` is the
        request boto3 would send; plain, it needs no boto3 client (about 0.2 s of
        imports and set-up before a stream's first byte). The lister's answers
        are checked as boto3's are: the version id, the range, the length.
        """
        if self.lister is not None and self.listing_url() is not None:
            return self.lister
        return self

    def describe(self) -> str:
        where = self.endpoint_url or "AWS"
        return f"S3Remote s3://{self.bucket or '<from URLs>'} at {where}"

    def _bucket_for(self, location: S3Location) -> str:
        return self.bucket or location.bucket

    # -- listing and manifests ------------------------------------------------

    def list_manifests(self, project: str) -> list[str]:
        prefix = f"{project}/manifests/"
        names: list[str] = []
        bucket = self.bucket
        if bucket is None:
            raise RemoteError("S3Remote needs a bucket to list manifests")
        if self.lister is not None and self.listing_url() is not None:
            return self.lister.list_manifests(project)
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"MaxItems": MAX_LISTED})
            for page in pages:
                for obj in page.get("Contents", []) or []:
                    name = obj["Key"][len(prefix):]
                    if name and "/" not in name and name.endswith(".json"):
                        names.append(name)
        except Exception as exc:
            raise _translate_request(exc, f"listing s3://{bucket}/{prefix}") from None
        return names

    def get_manifest(self, project: str, name: str) -> bytes:
        key = f"{project}/manifests/{name}"
        if self.bucket is None:
            raise RemoteError("S3Remote needs a bucket to fetch manifests")
        what = f"fetching manifest s3://{self.bucket}/{key}"
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            guard = DirectBody(getattr(body, "_raw_stream", None), what, closer=body,
                               deadline=body_deadline(self.request_timeout, response.get("ContentLength")))
            try:  # a hostile or broken server must not make us hold an endless document in memory
                data = body.read(_manifest.MAX_MANIFEST_BYTES + 1)
            except Exception:
                if guard.expired:
                    raise guard.deadline_error() from None
                raise
            finally:
                guard.close()
            if guard.expired:
                raise guard.deadline_error()
            return data
        except ReleaseCacheError:
            raise
        except Exception as exc:
            raise _translate_request(exc, what, key=key) from None

    # -- data -----------------------------------------------------------------

    def get_range(self, location: S3Location, start: int = 0, end: int | None = None) -> RangeResponse:
        bucket = self._bucket_for(location)
        what = f"s3://{bucket}/{location.key}" + (f"?versionId={location.version_id}" if location.version_id else "")
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": location.key}
        if location.version_id:
            kwargs["VersionId"] = location.version_id
        ranged = not (start == 0 and end is None)
        if ranged or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        context = {"url": what, "key": location.key, "version_id": location.version_id}
        try:
            response = self.client.get_object(**kwargs)
        except Exception as exc:
            raise _translate_request(exc, f"GET {what}", **context) from None
        body = response["Body"]
        content_range = parse_content_range(response.get("ContentRange"))
        length = response.get("ContentLength")
        if content_range is not None:
            first, _last, total = content_range
            partial = True
        else:
            first, total, partial = 0, length, False
        direct = DirectBody(getattr(body, "_raw_stream", None), what,
                            lambda exc, doing: _translate(exc, doing, **context),
                            closer=body, deadline=body_deadline(self.request_timeout, length))
        return RangeResponse(
            start=first,
            length=length,
            total_size=total,
            version_id=response.get("VersionId"),
            chunks=direct.guard(self._iter_body(body, what)),
            partial=partial,
            _closer=direct,
            _readinto=direct.readinto if direct.direct else None,
        )

    def list_sizes(self, locations: list[S3Location]) -> dict[S3Location, int]:
        """Sizes from ListObjectVersions: one request per 1,000 versions instead of one HEAD per file.

        A few keys are listed each by its own prefix; many, once by their common prefix.
        """
        wanted: dict[str, dict[str, list[S3Location]]] = {}
        for loc in locations:
            wanted.setdefault(self._bucket_for(loc), {}).setdefault(loc.key, []).append(loc)
        out: dict[S3Location, int] = {}
        for bucket, by_key in wanted.items():
            keys = sorted(by_key)
            prefixes = keys if len(keys) <= 16 else [os.path.commonprefix(keys)]
            for prefix in prefixes:
                try:
                    pages = self.client.get_paginator("list_object_versions").paginate(
                        Bucket=bucket, Prefix=prefix, PaginationConfig={"MaxItems": 1_000_000})
                    for page in pages:
                        for version in page.get("Versions", []) or []:
                            for loc in by_key.get(version.get("Key"), ()):
                                pinned = loc.version_id is not None
                                if (version.get("VersionId") == loc.version_id if pinned
                                        else version.get("IsLatest")):
                                    out[loc] = int(version["Size"])
                except Exception as exc:
                    raise _translate_request(exc, f"listing versions of s3://{bucket}/{prefix}") from None
        return out

    def stat(self, location: S3Location) -> int:
        bucket = self._bucket_for(location)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": location.key}
        if location.version_id:
            kwargs["VersionId"] = location.version_id
        try:
            return int(self.client.head_object(**kwargs)["ContentLength"])
        except Exception as exc:
            error = _translate_request(exc, f"HEAD s3://{bucket}/{location.key}", key=location.key,
                               version_id=location.version_id)
        if isinstance(error, RemoteAccessError):
            # Some S3-compatible servers refuse anonymous HEAD but allow GET: ask for one byte.
            return super().stat(location)
        raise error

    @staticmethod
    def _iter_body(body: Any, what: str) -> Iterator[bytes]:
        try:
            while True:
                chunk = body.read(CHUNK)
                if not chunk:
                    return
                yield chunk
        except Exception as exc:
            raise _translate(exc, f"reading {what}") from None

    def put_object(self, key: str, data: bytes | Any, **extra: Any) -> str | None:
        """Upload an object (publisher use); return the version id the server assigned."""
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        except Exception as exc:
            raise _translate(exc, f"PUT s3://{self.bucket}/{key}") from None
        return response.get("VersionId")
