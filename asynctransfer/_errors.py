"""The exception tree. Drivers raise only these; library errors are converted at one boundary.

```
TransferError                       base; .url names the object or file concerned
├── InvalidRequestError(ValueError)  bad input or config, raised before any request
│   └── ObjectTooLargeError             the object exceeds max_object_size / 10,000 parts x 5 GiB
├── LocalFileError(OSError)          the local file cannot be read or written (missing, a directory, disk full)
│   └── SourceChangedError              the file changed during an upload, or since the checkpoint
├── RemoteError                      the store answered with an error; .status, .code, .request_id
│   ├── NotFoundError                   404: NoSuchBucket, NoSuchKey, NoSuchUpload
│   ├── AccessDeniedError               401/403, bad credentials; never retried
│   ├── PreconditionFailedError         412: the object changed under us (If-Match)
│   │   ├── ObjectChangedError              the object or URL changed mid-download (ETag, If-Range)
│   │   └── ObjectExistsError               the key exists and the upload was not to overwrite it
│   ├── SlowDownError                   503 SlowDown / 429; retryable
│   └── ServerError                     other 5xx, or a 200 carrying an <Error> body; retryable
├── ProtocolViolationError           a response that contradicts the request (Content-Range, length)
├── NetworkError                     connect / reset / read failures; retryable
│   └── TransferTimeoutError            a connect or read timeout
├── IntegrityError                   a checksum or size mismatch; the final file never appears
└── RetryBudgetError                 the session's retry budget ran out: failures outran successes
```

Cancellation is never wrapped. The public verbs raise one of these, never an ExceptionGroup.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
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
    "TransferError",
    "TransferTimeoutError",
]


class TransferError(Exception):
    """Base of every error this library raises. ``url`` names the object or file concerned."""

    retryable: bool = False

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class InvalidRequestError(TransferError, ValueError):
    """The input or the configuration is invalid; nothing was sent."""


class ObjectTooLargeError(InvalidRequestError):
    """The object is larger than the store (or ``max_object_size``) allows."""


class LocalFileError(TransferError, OSError):
    """A local file could not be read or written."""


class SourceChangedError(LocalFileError):
    """The source file changed while it was being uploaded, or since the checkpoint of an
    interrupted upload was written (with ``restart=False``)."""


class RemoteError(TransferError):
    """The store answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.code = code
        self.request_id = request_id


class NotFoundError(RemoteError):
    """The bucket, key or multipart upload does not exist."""


class AccessDeniedError(RemoteError):
    """The credentials were refused or lack permission. Retrying cannot help."""


class PreconditionFailedError(RemoteError):
    """A condition failed: the object changed during the transfer (If-Match / If-None-Match)."""


class ObjectChangedError(PreconditionFailedError):
    """The object (or the resource behind a URL) changed while it was being downloaded. The
    download restarts once from the new version unless configured not to; never is a file
    made of two versions."""


class ObjectExistsError(PreconditionFailedError):
    """The destination key exists and the upload was asked not to overwrite it
    (``overwrite=False``: If-None-Match: * on PutObject and CompleteMultipartUpload)."""


class SlowDownError(RemoteError):
    """The store asked us to slow down (503 SlowDown, 429)."""

    retryable = True


class ServerError(RemoteError):
    """The store failed (5xx), or answered 200 with an error document."""

    retryable = True


class ProtocolViolationError(TransferError):
    """A response contradicts what was asked: wrong Content-Range, wrong length, missing ETag."""


class NetworkError(TransferError):
    """The connection failed: refused, reset, or closed mid-body."""

    retryable = True
    received: int = 0
    """Bytes of the body that had arrived, in place, when it broke: a retry asks for the rest."""


class TransferTimeoutError(NetworkError):
    """Connecting or reading took longer than the configured timeout."""


class IntegrityError(TransferError):
    """The bytes do not match their checksum or expected size."""


class RetryBudgetError(TransferError):
    """The retry budget shared by a Transferer's transfers ran out: the store or the network
    failed more than it succeeded. The last failure is the ``__cause__``."""
