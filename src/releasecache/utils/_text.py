"""Short, safe renderings of untrusted values for error messages."""

from __future__ import annotations


def short_repr(value: object, limit: int = 160) -> str:
    """``repr(value)``, cut to ``limit`` characters so that a hostile 10 MB string makes a readable error."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(str(value))} characters)"

