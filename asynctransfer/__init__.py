"""asynctransfer: an asyncio-native, high-throughput transfer engine for S3 and HTTP."""

from ._api import Transferer, download, upload
from ._engine import EngineStatistics
from ._errors import (
    AccessDeniedError,
    IntegrityError,
    InvalidRequestError,
    LocalFileError,
    NetworkError,
    NotFoundError,
    ObjectChangedError,
    ObjectExistsError,
    ObjectTooLargeError,
    PreconditionFailedError,
    ProtocolViolationError,
    RemoteError,
    RetryBudgetError,
    ServerError,
    SlowDownError,
    SourceChangedError,
    TransferError,
    TransferTimeoutError,
)
from ._events import Event, EventHook
from ._options import TransferConfig
from ._orphans import UploadInfo
from ._results import BatchResult, DownloadResult, FileFailure, UploadResult
from ._version import __version__

__all__ = [
    "AccessDeniedError",
    "BatchResult",
    "DownloadResult",
    "EngineStatistics",
    "Event",
    "EventHook",
    "FileFailure",
    "IntegrityError",
    "InvalidRequestError",
    "LocalFileError",
    "NetworkError",
    "NotFoundError",
    "ObjectChangedError",
    "ObjectExistsError",
    "ObjectTooLargeError",
    "PreconditionFailedError",
    "ProtocolViolationError",
    "RemoteError",
    "RetryBudgetError",
    "ServerError",
    "SlowDownError",
    "SourceChangedError",
    "TransferConfig",
    "TransferError",
    "TransferTimeoutError",
    "Transferer",
    "UploadInfo",
    "UploadResult",
    "__version__",
    "download",
    "upload",
]
