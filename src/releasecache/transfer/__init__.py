"""Bytes from a remote into a verified blob (engine), or into a reader (stream); resume state; one retry policy."""

from .config import TransferConfig
from .engine import Transfer
from .retry import RetryPolicy
from .stream import RemoteFile

__all__ = ["RemoteFile", "RetryPolicy", "Transfer", "TransferConfig"]
