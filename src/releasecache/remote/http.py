"""Plain HTTP(S) through requests: public buckets, web mirrors, any static server.

Objects are fetched from ``<base_url>/<key>?versionId=<id>`` with a ``Range``
header, which is how a public S3 bucket answers without any signing.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from typing import Any, Iterator
from urllib.parse import quote

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
from ._retry_codes import RETRY_STATUSES, parse_content_range, parse_retry_after
from ._direct import DirectBody
from .base import RangeNotSatisfiable, RangeResponse, Remote

CHUNK = 1024 * 1024
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.send_version_id = send_version_id
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
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(self.headers)
            self._local.session = session
        return session

    def describe(self) -> str:
        return f"HttpRemote {self.base_url}"

    def url_for(self, key: str) -> str:
        """The URL of an object key below the base URL."""
        return f"{self.base_url}/{quote(key)}"

    def _get(self, url: str, what: str, **kwargs: Any) -> Any:
        import requests

        try:
            response = self.session.get(url, timeout=self.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            # refused, DNS failure, connect timeout, or no answer before the read timeout
            raise EndpointUnreachableError(f"{what}: no answer from the server ({type(exc).__name__}: {exc}); "
                                           f"{OFFLINE_HINT}") from None
        except requests.RequestException as exc:
            raise TransientRemoteError(f"{what}: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status in (200, 206):
            return response
        text = response.text[:300] if status != 416 else ""
        response.close()
        msg = f"{what}: HTTP {status} {text}".rstrip()
        if status == 404:
            raise RemoteNotFoundError(msg)
        if status in (401, 403):
            raise RemoteAccessError(msg)
        if status == 416:
            raise RangeNotSatisfiable(msg)
        if status in RETRY_STATUSES or "SlowDown" in text:
            raise TransientRemoteError(msg, parse_retry_after(response.headers.get("Retry-After")))
        raise RemoteError(msg)

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
            response = self._get(self.base_url + "/", f"listing {self.base_url}/{prefix}", params=params)
            try:
                root = ET.fromstring(response.content)
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
        response = self._get(url, f"fetching manifest {url}", stream=True)
        try:  # read at most one byte past the limit, so an endless document is refused, not buffered
            data = bytearray()
            for chunk in response.iter_content(1 << 20):
                data += chunk
                if len(data) > _manifest.MAX_MANIFEST_BYTES:
                    break
            return bytes(data)
        finally:
            response.close()

    def get_range(self, location: S3Location, start: int = 0, end: int | None = None) -> RangeResponse:
        url = self.url_for(location.key)
        params = {"versionId": location.version_id} if (self.send_version_id and location.version_id) else None
        headers = {}
        if not (start == 0 and end is None):
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        what = f"GET {url}" + (f"?versionId={location.version_id}" if params else "")
        response = self._get(url, what, params=params, headers=headers, stream=True)
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if response.status_code == 206:
            content_range = parse_content_range(response.headers.get("Content-Range"))
            if content_range is None:
                response.close()
                raise TransientRemoteError(f"{what}: 206 without a valid Content-Range")
            first, _last, total = content_range
            partial = True
        else:
            first, total, partial = 0, length, False
        body = DirectBody(response.raw, what)
        return RangeResponse(
            start=first,
            length=length,
            total_size=total,
            version_id=response.headers.get("x-amz-version-id"),
            chunks=self._iter(response, what),
            partial=partial,
            _closer=body if body.direct else response,
            _readinto=body.readinto if body.direct else None,
        )

    @staticmethod
    def _iter(response: Any, what: str) -> Iterator[bytes]:
        try:
            yield from response.iter_content(CHUNK)
        except Exception as exc:  # ChunkedEncodingError, ConnectionError, ReadTimeout, ProtocolError
            raise TransientRemoteError(f"reading {what}: {type(exc).__name__}: {exc}") from None
