"""Sizes for people: ``human_bytes(3_500_000) == '3.3 MiB'``."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """Format a byte count with binary units (B, KiB, MiB, GiB, TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
