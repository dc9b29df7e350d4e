"""Where bytes come from: S3 (boto3), plain HTTP(S) (requests), a local mirror."""

from .base import RangeNotSatisfiable, RangeResponse, Remote
from .http import HttpRemote
from .local import LocalRemote
from .s3 import S3Remote
from .factory import make_remote

__all__ = ["Remote", "RangeResponse", "RangeNotSatisfiable", "S3Remote", "HttpRemote", "LocalRemote", "make_remote"]
