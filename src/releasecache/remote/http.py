"""Plain HTTP(S) through requests: public buckets, web mirrors, any static server.

Objects are fetched from ``<base_url>/<key>?versionId=<id>`` with a ``Range``
header, which is how a public S3 bucket answers without any signing.
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

from ..config import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
from ..errors import (
    OFFLINE_HINT,
    EndpointUnreachableError,
    RemoteAccessError,
    RemoteError,
    RemoteNotFoundError,
    TransientRemoteError,
)
from .. import manifest as _manifest
from ..manifest import S3Location
from ._deadline import DEFAULT_REQUEST_TIMEOUT, body_deadline
from ._retry_codes import DENIED_S3_CODES, NOT_FOUND_S3_CODES, RETRY_STATUSES, parse_content_range, parse_retry_after
from ._direct import DirectBody
from .base import RangeNotSatisfiable, RangeResponse, Remote

CHUNK = 1024 * 1024
MAX_ERROR_BODY = 64 * 1024  # bytes of an error answer read, at most (its body may never end)
MAX_LISTING_PAGE = 16 * 1024 * 1024  # a page of 1,000 keys is about 300 kB
MAX_REDIRECTS = 5
_XML_FIELD = re.compile(rb"<(Code|Message)>([^<]{0,300})</\1>")
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _no_answer(exc: BaseException) -> bool:
    """True if the server gave no answer at all: refused, DNS failure, connect timeout, or
    silence until the read timeout (the request is streamed, so that is before the headers).

    A connection broken by a malformed answer is an answer, retried as usual.
    """
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    if isinstance(exc, (requests.ConnectTimeout, requests.ReadTimeout)):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        return isinstance(getattr(exc.args[0], "reason", None), (NewConnectionError, ConnectTimeoutError))
    return False


class HttpRemote(Remote):
    """Objects served over HTTP(S) below ``base_url``.

    Parameters
    ----------
    base_url
        URL of the bucket root, e.g. ``https://visual-behavior-neuropixels-data.s3.us-west-2.amazonaws.com``
        or ``http://127.0.0.1:8080/mybucket``. An object's URL is ``base_url + "/" + key``.
    send_version_id
        Append ``?versionId=`` to pin the version (S3 and S3-compatible servers
        honour it; a static server ignores it, so the hash check is what protects you).
    manifest_names
        Names to report from :meth:`list_manifests` when the server cannot list
        (a static server); by default the S3 ListObjectsV2 XML API is used.
    pool_size
        Connections kept open per thread-local session.
    connect_timeout, read_timeout
        Seconds; ``read_timeout`` is the stall timeout.
    request_timeout
        Seconds one response body may take, plus one second per MiB it announces
        (None: no limit); cuts off a server that drips bytes or never ends a body.
    ca_bundle
        A file of CA certificates to verify HTTPS servers with (None: requests' default).

    Notes
    -----
    Redirects are followed (at most five); a streamed read refuses an answer from
    another host (see :class:`~releasecache.transfer.stream.RemoteFile`), while a
    download is checked against the manifest's hash wherever it came from.
    """

    def __init__(
        self,
        base_url: str,
        *,
        send_version_id: bool = True,
        manifest_names: list[str] | None = None,
        pool_size: int = 32,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        headers: dict[str, str] | None = None,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        ca_bundle: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_bundle = ca_bundle
        self.send_version_id = send_version_id
        # Without ?versionId= the server cannot know, let alone prove, which version it sends.
        self.reports_version = send_version_id
        self.request_timeout = request_timeout
        self.manifest_names = manifest_names
        self.pool_size = pool_size
        self.timeout = (connect_timeout, read_timeout)
        self.headers = dict(headers or {})
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @property
    def session(self) -> Any:
        """A requests session for this thread (sessions are not guaranteed thread-safe)."""
        session = getattr(self._local, "session", None)
        if session is None:
            import requests
            from requests.adapters import HTTPAdapter

            session = requests.Session()
            session.max_redirects = MAX_REDIRECTS
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(self.headers)
            if self.ca_bundle:
                session.verify = self.ca_bundle
            self._local.session = session
        return session

    def describe(self) -> str:
        return f"HttpRemote {self.base_url}"

    def url_for(self, key: str) -> str:
        """The URL of an object key below the base URL."""
        return f"{self.base_url}/{quote(key)}"

    def _get(self, url: str, what: str, *, method: str = "GET", context: dict[str, Any] | None = None,
             **kwargs: Any) -> Any:
        """An open (streamed) answer with status 200 or 206; anything else raises from the hierarchy."""
        import requests

        context = {"url": url, **(context or {})}
        try:
            response = self.session.request(method, url, timeout=self.timeout, stream=True, **kwargs)
        except requests.TooManyRedirects as exc:
            raise RemoteError(f"{what}: more than {MAX_REDIRECTS} redirects ({exc})").with_context(**context) from None
        except requests.RequestException as exc:
            if not _no_answer(exc):
                raise TransientRemoteError(f"{what}: {type(exc).__name__}: {exc}").with_context(**context) from None
            raise EndpointUnreachableError(f"{what}: no answer from the server ({type(exc).__name__}: {exc}); "
                                           f"{OFFLINE_HINT}").with_context(**context) from None
        status = response.status_code
        if status in (200, 206):
            return response
        try:  # an error page is read only in part: its body may never end
            head = response.raw.read(MAX_ERROR_BODY, decode_content=True) if method != "HEAD" else b""
        except Exception:
            head = b""
        finally:
            response.close()
        fields = dict(_XML_FIELD.findall(head or b""))
        code = fields.get(b"Code", b"").decode("utf-8", "replace") or None
        detail = " ".join(v.decode("utf-8", "replace") for v in (fields.get(b"Code"), fields.get(b"Message")) if v)
        if not detail and status != 416:
            detail = head[:200].decode("utf-8", "replace").strip()
        msg = f"{what}: HTTP {status} {detail}".rstrip()
        context.update(status=status, code=code)
        if status == 404 or code in NOT_FOUND_S3_CODES:
            raise RemoteNotFoundError(msg).with_context(**context)
        if status in (401, 403) or code in DENIED_S3_CODES:
            raise RemoteAccessError(msg).with_context(**context)
        if status == 416:
            raise RangeNotSatisfiable(msg).with_context(**context)
        if status in RETRY_STATUSES or code == "SlowDown":
            raise TransientRemoteError(msg, parse_retry_after(response.headers.get("Retry-After"))
                                       ).with_context(**context)
        raise RemoteError(msg).with_context(**context)

    def _read_bounded(self, response: Any, limit: int, what: str) -> bytes:
        """At most ``limit + 1`` bytes of a body, within the request deadline."""
        guard = DirectBody(response.raw, what, closer=response,
                           deadline=body_deadline(self.request_timeout, _length(response)))
        data = bytearray()
        try:
            for chunk in guard.guard(self._iter(response, what)):
                data += chunk
                if len(data) > limit:
                    break
        finally:
            guard.close()
        return bytes(data)

    def list_manifests(self, project: str) -> list[str]:
        if self.manifest_names is not None:
            return list(self.manifest_names)
        prefix = f"{project}/manifests/"
        names: list[str] = []
        token: str | None = None
        for _ in range(10_000):  # bounded pagination
            params = {"list-type": "2", "prefix": prefix}
            if token:
                params["continuation-token"] = token
            what = f"listing {self.base_url}/{prefix}"
            content = self._read_bounded(self._get(self.base_url + "/", what, params=params), MAX_LISTING_PAGE, what)
            if len(content) > MAX_LISTING_PAGE:
                raise RemoteError(f"{what}: a listing page larger than {MAX_LISTING_PAGE} bytes; refusing it")
            try:
                root = ET.fromstring(content)
            except ET.ParseError as exc:
                raise RemoteError(
                    f"{self.base_url} did not answer an S3 listing ({exc}); pass manifest_names= for a static server"
                ) from None
            ns = _S3_NS if root.tag.startswith(_S3_NS) else ""
            for item in root.iter(f"{ns}Contents"):
                key = item.findtext(f"{ns}Key") or ""
                name = key[len(prefix):]
                if key.startswith(prefix) and name and "/" not in name and name.endswith(".json"):
                    names.append(name)
            if (root.findtext(f"{ns}IsTruncated") or "").lower() != "true":
                break
            token = root.findtext(f"{ns}NextContinuationToken")
            if not token:
                break
        return names

    def get_manifest(self, project: str, name: str) -> bytes:
        url = self.url_for(f"{project}/manifests/{name}")
        what = f"fetching manifest {url}"
        # At most one byte past the limit, so an endless document is refused, not buffered.
        return self._read_bounded(self._get(url, what), _manifest.MAX_MANIFEST_BYTES, what)

    def stat(self, location: S3Location) -> int:
        """Size of the pinned object, from a HEAD request."""
        url = self.url_for(location.key)
        params = {"versionId": location.version_id} if (self.send_version_id and location.version_id) else None
        what = f"HEAD {url}"
        try:
            response = self._get(url, what, method="HEAD", params=params, allow_redirects=True,
                                 context={"key": location.key, "version_id": location.version_id})
        except RemoteAccessError:
            # Some S3-compatible servers refuse anonymous HEAD but allow GET: ask for one byte.
            return super().stat(location)
        response.close()
        length = _length(response)
        if length is None:
            return super().stat(location)  # no Content-Length in the HEAD answer: ask for a byte
        return length

    def get_range(self, location: S3Location, start: int = 0, end: int | None = None) -> RangeResponse:
        url = self.url_for(location.key)
        params = {"versionId": location.version_id} if (self.send_version_id and location.version_id) else None
        headers = {}
        if not (start == 0 and end is None):
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        what = f"GET {url}" + (f"?versionId={location.version_id}" if params else "")
        context = {"key": location.key, "version_id": location.version_id}
        response = self._get(url, what, params=params, headers=headers, context=context)
        length = _length(response)
        if response.status_code == 206:
            content_range = parse_content_range(response.headers.get("Content-Range"))
            if content_range is None:
                response.close()
                raise TransientRemoteError(f"{what}: 206 without a valid Content-Range").with_context(
                    url=url, **context)
            first, _last, total = content_range
            partial = True
        else:
            first, total, partial = 0, length, False
        body = DirectBody(response.raw, what, closer=response, deadline=body_deadline(self.request_timeout, length))
        final = urlsplit(response.url)
        asked = urlsplit(url)
        moved = (final.scheme, final.netloc) != (asked.scheme, asked.netloc)
        return RangeResponse(
            start=first,
            length=length,
            total_size=total,
            version_id=response.headers.get("x-amz-version-id"),
            chunks=body.guard(self._iter(response, what)),
            partial=partial,
            redirected_to=response.url if moved else None,
            _closer=body,
            _readinto=body.readinto if body.direct else None,
        )

    @staticmethod
    def _iter(response: Any, what: str) -> Iterator[bytes]:
        try:
            yield from response.iter_content(CHUNK)
        except Exception as exc:  # ChunkedEncodingError, ConnectionError, ReadTimeout, ProtocolError
            raise TransientRemoteError(f"reading {what}: {type(exc).__name__}: {exc}") from None


def _length(response: Any) -> int | None:
    """The Content-Length of a requests response, if it is a plain number."""
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None
