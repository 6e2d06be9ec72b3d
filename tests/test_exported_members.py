"""Guard: the public names are exactly these, so adding or dropping one is a visible decision."""

from __future__ import annotations

from types import ModuleType

import pytest

import asynctransfer

EXPECTED_ALL = [
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


def test_all_is_pinned() -> None:
    assert asynctransfer.__all__ == EXPECTED_ALL


def test_all_is_sorted_without_duplicates() -> None:
    assert asynctransfer.__all__ == sorted(set(asynctransfer.__all__))


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_exported_name_exists(name: str) -> None:
    assert getattr(asynctransfer, name, None) is not None


def test_every_public_name_is_in_all() -> None:
    # A re-export added to __init__.py without __all__ would be public by accident.
    public = {
        name
        for name, value in vars(asynctransfer).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public <= set(asynctransfer.__all__)
