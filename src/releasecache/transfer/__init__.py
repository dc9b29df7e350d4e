"""Bytes from a remote into a verified blob (engine), or into a reader (stream); resume state; one retry policy."""

from .config import TransferConfig
from .cancel import CancelToken
from .engine import FetchOutcome, Transfer
from .retry import RetryPolicy
from .stream import RemoteFile

__all__ = ["CancelToken", "FetchOutcome", "RemoteFile", "RetryPolicy", "Transfer", "TransferConfig"]
