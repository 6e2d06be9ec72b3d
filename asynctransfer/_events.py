"""What a transfer reports while it runs: one ``Event`` at a time, to the hook the caller gave.

Kinds: ``started`` (``total`` bytes, ``parts``), ``part`` (a part the store acknowledged or a
range written: ``part``, ``nbytes``, ``done`` so far; ``reused`` when an interrupted run's part
was kept), ``retry`` (``attempt``, ``error``), ``slowdown`` (``concurrency``: the new in-flight
limit), ``finished`` (``done``, ``seconds``), ``failed`` (``error``).

The hook is found through a context variable set by the public verb for the duration of one
transfer; tasks the transfer starts inherit it, so the engine's shared parts (the retry loop,
the part loops) report to the transfer they work for without passing a hook everywhere. A hook
that raises is logged and otherwise ignored: reporting never breaks a transfer.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger("asynctransfer")

Kind = Literal["started", "part", "retry", "slowdown", "finished", "failed"]


@dataclass(frozen=True, slots=True)
class Event:
    kind: Kind
    url: str
    """The transfer's object or URL (``s3://bucket/key``; a URL without its password)."""
    direction: Literal["upload", "download"]
    time: float
    """``time.time()`` when it happened."""
    total: int | None = None
    parts: int | None = None
    part: int | None = None
    nbytes: int | None = None
    done: int | None = None
    """Bytes acknowledged (upload) or written (download) so far."""
    reused: bool = False
    attempt: int | None = None
    error: str | None = None
    concurrency: int | None = None
    """``slowdown``: the new in-flight limit."""
    in_flight: int | None = None
    """``part``: requests of the session in flight at that moment."""
    retries: int | None = None
    """``part``, ``finished``: retries of this transfer so far."""
    seconds: float | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})


class EventHook(Protocol):
    def __call__(self, event: Event, /) -> None: ...


class _Transfer:
    """The reporting state of one transfer."""

    def __init__(self, hook: EventHook, url: str, direction: Literal["upload", "download"]):
        self.hook = hook
        self.url = url
        self.direction = direction
        self.done = 0
        self.retries = 0
        self.started = time.monotonic()

    def emit(self, kind: Kind, **fields: object) -> None:
        event = Event(kind, self.url, self.direction, time.time(), **fields)  # type: ignore[arg-type]
        try:
            self.hook(event)
        except Exception:
            logger.exception("the progress hook failed on %s", event)


_current: contextvars.ContextVar[_Transfer | None] = contextvars.ContextVar(
    "asynctransfer_transfer", default=None
)


@contextlib.contextmanager
def reporting(
    hook: EventHook | None, url: str, direction: Literal["upload", "download"]
) -> Iterator[None]:
    """Send this transfer's events to ``hook`` (None: nowhere), and ``finished``/``failed``."""
    if hook is None:
        yield
        return
    transfer = _Transfer(hook, url, direction)
    token = _current.set(transfer)
    try:
        yield
    except BaseException as exc:
        transfer.emit("failed", error=f"{type(exc).__name__}: {exc}", done=transfer.done)
        raise
    else:
        transfer.emit(
            "finished",
            done=transfer.done,
            retries=transfer.retries,
            seconds=time.monotonic() - transfer.started,
        )
    finally:
        _current.reset(token)


def started(total: int | None, parts: int) -> None:
    transfer = _current.get()
    if transfer is not None:
        transfer.emit("started", total=total, parts=parts)


def part_done(part: int, nbytes: int, *, in_flight: int, reused: bool = False) -> None:
    transfer = _current.get()
    if transfer is not None:
        transfer.done += nbytes
        transfer.emit(
            "part",
            part=part,
            nbytes=nbytes,
            done=transfer.done,
            reused=reused,
            in_flight=in_flight,
            retries=transfer.retries,
        )


def retry(attempt: int, error: BaseException) -> None:
    transfer = _current.get()
    if transfer is not None:
        transfer.retries += 1
        transfer.emit("retry", attempt=attempt, error=f"{type(error).__name__}: {error}")


def slowdown(concurrency: int) -> None:
    transfer = _current.get()
    if transfer is not None:
        transfer.emit("slowdown", concurrency=concurrency)
