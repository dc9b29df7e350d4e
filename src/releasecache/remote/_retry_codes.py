"""Which HTTP statuses and S3 error codes are worth retrying."""

from __future__ import annotations

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_S3_CODES = frozenset({
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
    "RequestTimeTooSkewed", "Throttling", "ThrottlingException", "TooManyRequests",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "OperationAborted",
})
NOT_FOUND_S3_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "NotFound"})
DENIED_S3_CODES = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                             "AllAccessDisabled", "Forbidden"})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), capped at 10 minutes."""
    if not value:
        return None
    try:
        return max(0.0, min(float(value), 600.0))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    import datetime as _dt
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = _dt.datetime.now(when.tzinfo or _dt.timezone.utc)
    return max(0.0, min((when - now).total_seconds(), 600.0))


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes a-b/total`` -> (a, b, total or None)."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, total = value[6:].split("/", 1)
        a, b = span.split("-", 1)
        return int(a), int(b), (None if total.strip() == "*" else int(total))
    except ValueError:
        return None
