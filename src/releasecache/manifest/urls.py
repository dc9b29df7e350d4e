"""Object URLs of every style in use → ``(bucket, key)``, and the pinned :class:`S3Location`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ..errors import UnsafePathError
from ..utils import short_repr
from .paths import all_plainly_safe, check_relative_path

# virtual-hosted: <bucket>.s3[.-<region>|.dualstack.<region>].amazonaws.com[.cn]; legacy bucket names
# (and AllenSDK's test buckets) may hold '_', which must not make the URL fall through to path-style.
_VHOST_RE = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9._\-]*)\.s3(?:[.\-][a-z0-9\-.]+)?\.amazonaws\.com(?:\.cn)?$")
_AWS_HOST_RE = re.compile(r"(?:^|\.)amazonaws\.com(?:\.cn)?$")


# path-style: s3[.-<region>].amazonaws.com/<bucket>/<key>
_PATHSTYLE_RE = re.compile(r"^s3(?:[.\-][a-z0-9\-.]+)?\.amazonaws\.com(?:\.cn)?$")


# Checked for every entry of a manifest: compiled once.
_CONTROL_OR_BACKSLASH = re.compile(r"[\x00-\x1f\\]")
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_]{1,254}$")
# http(s)://host/path with no user, port, query, fragment or parameters: the shape manifests use.
_SIMPLE_HTTP = re.compile(r"^https?://(?P<host>[A-Za-z0-9.\-]+)(?P<path>/[^?#;@]*)\Z", re.IGNORECASE)
_VHOST_BUCKETS: dict[str, str] = {}  # host -> its bucket ("" if not virtual-hosted)
# Many URLs joined by "\n": virtual-hosted http(s) with a key of at least two segments and none of
# the characters that need urlsplit or unquote. Groups: host, key, key below its first segment.
_PLAIN_URL_LINE = re.compile(r"^(?i:https?)://([A-Za-z0-9.\-]+)/([^/\n?#;@%]+/([^\n?#;@%]+))$", re.MULTILINE)
# The first URL's scheme and host ("site"), its host, and its key's first segment with its "/".
_PLAIN_URL_HEAD = re.compile(r"((?i:https?)://([A-Za-z0-9.\-]+)/)([^/\n?#;@%]+/)")


@dataclass(frozen=True)
class S3Location:
    """Where an object lives: bucket, key, and the pinned version id."""

    bucket: str
    key: str
    version_id: str | None = None


def parse_s3_url(url: str) -> tuple[str, str]:
    """Map an object URL to ``(bucket, key)``, for every URL style in use.

    Accepts virtual-hosted (``https://b.s3.amazonaws.com/k``, with or without a
    region, dash or dot form, dualstack), path-style (``https://s3.us-west-2.amazonaws.com/b/k``),
    ``s3://b/k``, and any other host as a path-style custom endpoint
    (``http://127.0.0.1:9000/b/k``). The key is percent-decoded. Bucket names
    with ``_`` (legacy names) are read from virtual-hosted URLs too; an
    ``amazonaws.com`` host of neither form is refused rather than guessed.

    Raises
    ------
    UnsafePathError
        If the URL is not one of these shapes or its key is unsafe.
    """
    if not isinstance(url, str):
        raise UnsafePathError(f"URL must be a string, got {type(url).__name__}")
    if _CONTROL_OR_BACKSLASH.search(url):
        raise UnsafePathError(f"URL {short_repr(url)} contains control characters or backslashes", url=url)
    fast = _SIMPLE_HTTP.match(url)
    bucket = _vhost_bucket(fast.group("host")) if fast is not None else ""
    if bucket:  # the shape manifests use, without urlsplit's generality (same result)
        return _checked(url, bucket, fast.group("path"))  # type: ignore[union-attr]
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        bucket, path = parts.netloc, parts.path
    elif scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        vhost = _VHOST_RE.match(host)
        if vhost and not _PATHSTYLE_RE.match(host):
            bucket, path = vhost.group("bucket"), parts.path
        elif _AWS_HOST_RE.search(host) and not _PATHSTYLE_RE.match(host):
            # An AWS host of no known form: reading its path as <bucket>/<key> would pick another bucket.
            raise UnsafePathError(f"URL {short_repr(url)}: the AWS host {short_repr(host)} is neither "
                                  "<bucket>.s3[.<region>].amazonaws.com nor s3[.<region>].amazonaws.com", url=url)
        else:
            segments = parts.path.lstrip("/").split("/", 1)
            if len(segments) != 2:
                raise UnsafePathError(f"URL {short_repr(url)} has no bucket and key in its path", url=url)
            bucket, path = segments[0], segments[1]
    else:
        raise UnsafePathError(f"URL {short_repr(url)} is not http(s):// or s3://", url=url)
    return _checked(url, bucket, path)


def parse_plain_s3_urls(urls: list[str]) -> list[tuple[str, str, str]] | None:
    """``(bucket, key, key below its first segment)`` of each URL, if all have the plain shape.

    The plain shape is what manifests use: ``http(s)://<bucket>.s3[...].amazonaws.com/<prefix>/<rest>``
    with a safe key and nothing to percent-decode. For those URLs the result equals
    :func:`parse_s3_url`'s, checked with a few C-level scans over all URLs at once instead of a
    Python call per URL (a manifest holds up to 100,000). None means "parse them one by one"
    (some URL has another shape, or is bad: :func:`parse_s3_url` then says why).
    """
    try:
        joined = "\n".join(urls)
        # no control character (so no URL holds "\n" either) and no backslash in any URL
        if not urls or not all(map(str.isprintable, urls)) or "\\" in joined:
            return None
    except TypeError:
        return None
    head = _PLAIN_URL_HEAD.match(joined)
    if head is None:
        return None
    site, host, prefix = head.group(1), head.group(2), head.group(3)
    if joined.count("\n" + site) == len(urls) - 1:  # one host for all (a release's usual case)
        keys_joined = joined[len(site):].replace("\n" + site, "\n")
        if "?" in keys_joined or "#" in keys_joined or ";" in keys_joined or "@" in keys_joined \
                or "%" in keys_joined:  # the characters that need urlsplit or unquote
            return None
        keys = keys_joined.split("\n")
        hosts = [host]
        if joined.count("\n" + site + prefix) == len(urls) - 1:  # and one project prefix
            rests = keys_joined[len(prefix):].replace("\n" + prefix, "\n").split("\n")
        else:
            rests = [key.partition("/")[2] for key in keys]
        lines = None
    else:
        lines = _PLAIN_URL_LINE.findall(joined)
        if len(lines) != len(urls):  # each line matches at most once: one that did not is not plain
            return None
        hosts = list({line[0] for line in lines})
        keys = [line[1] for line in lines]
        rests = [line[2] for line in lines]
    buckets = {}
    for host in hosts:
        bucket = _vhost_bucket(host)
        if not bucket or not _BUCKET_RE.match(bucket) or ".." in bucket:
            return None
        buckets[host] = bucket
    if not all_plainly_safe(keys) or not all(rests):  # a key of one segment has no path below its prefix
        return None
    if lines is None:
        bucket = buckets[hosts[0]]
        return [(bucket, key, rest) for key, rest in zip(keys, rests)]
    return [(buckets[line[0]], key, rest) for line, key, rest in zip(lines, keys, rests)]


def _vhost_bucket(host: str) -> str:
    """The bucket of a virtual-hosted AWS host, or "" (memoised: a release names few hosts)."""
    bucket = _VHOST_BUCKETS.get(host)
    if bucket is None:
        low = host.lower()
        vhost = _VHOST_RE.match(low)
        bucket = vhost.group("bucket") if vhost and not _PATHSTYLE_RE.match(low) else ""
        if len(_VHOST_BUCKETS) < 64:
            _VHOST_BUCKETS[host] = bucket
    return bucket


class _KeyOf:
    """``key of URL ...`` for messages, formatted only when one is raised (entries are many)."""

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        self.url = url

    def __str__(self) -> str:
        return f"key of URL {short_repr(self.url)}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _checked(url: str, bucket: str, path: str) -> tuple[str, str]:
    key = unquote(path.lstrip("/")) if "%" in path else path.lstrip("/")
    if not bucket or not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise UnsafePathError(f"URL {short_repr(url)} names no valid bucket", url=url)
    try:
        check_relative_path(key, what=_KeyOf(url))  # type: ignore[arg-type]
    except UnsafePathError as exc:
        raise exc.with_context(url=url, key=key)
    return bucket, key

