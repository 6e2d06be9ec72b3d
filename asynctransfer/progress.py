"""Progress reporters: hooks that turn a transfer's events into something to look at.

    await asynctransfer.upload("big.bin", "s3://b/k", on_event=TqdmProgress())

``TqdmProgress`` draws a tqdm bar (``tqdm.auto``: a terminal bar, or a widget in a notebook),
``RichProgress`` a rich bar, ``JsonLines`` writes one JSON object per event (the CLI's
``--events``). Bars count bytes the store acknowledged (upload) or that were written (download),
never bytes merely handed to a buffer, and show rate, ETA, requests in flight and retries.
tqdm and rich are optional (``pip install asynctransfer[progress]``); ``auto_progress`` picks
whichever is installed. The library itself never prints: it logs to the ``asynctransfer``
logger.
"""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._events import Event, EventHook

__all__ = ["JsonLines", "RichProgress", "TqdmBatchProgress", "TqdmProgress", "auto_progress"]


def _label(event: Event) -> str:
    name = event.url.rstrip("/").rsplit("/", 1)[-1] or event.url
    return f"{'↑' if event.direction == 'upload' else '↓'} {name}"


class TqdmProgress:
    """One tqdm bar per transfer (several transfers in a session: several bars)."""

    def __init__(self, *, file: IO[str] | None = None, leave: bool = True) -> None:
        from tqdm.auto import tqdm  # optional dependency: imported only when asked for

        self._tqdm = tqdm
        self._file = file
        self._leave = leave
        self._bars: dict[str, Any] = {}

    def __call__(self, event: Event) -> None:
        bar = self._bars.get(event.url)
        if event.kind == "started":
            self._bars[event.url] = self._tqdm(
                total=event.total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=_label(event),
                file=self._file,
                leave=self._leave,
                dynamic_ncols=True,
            )
        elif bar is None:
            return
        elif event.kind == "part":
            bar.set_postfix(in_flight=event.in_flight, retries=event.retries, refresh=False)
            bar.update(event.nbytes or 0)
        elif event.kind == "slowdown":
            bar.set_postfix(limit=event.concurrency)
        elif event.kind in ("finished", "failed"):
            if event.kind == "failed":
                bar.set_postfix_str(f"failed: {event.error}")
            bar.close()
            del self._bars[event.url]


class TqdmBatchProgress:
    """One tqdm bar for a whole batch (``copy_tree``, ``sync``...): bytes of every file, and
    files done and failed. The total is unknown: the listing is read as the batch goes."""

    def __init__(self, *, file: IO[str] | None = None) -> None:
        from tqdm.auto import tqdm  # optional dependency: imported only when asked for

        self._bar = tqdm(
            unit="B", unit_scale=True, unit_divisor=1024, file=file, dynamic_ncols=True
        )
        self._files = self._failed = 0

    def __call__(self, event: Event) -> None:
        if event.kind == "part":
            self._bar.update(event.nbytes or 0)
            return
        if event.kind not in ("finished", "failed"):
            return
        if event.kind == "finished":
            self._files += 1
        else:
            self._failed += 1
        self._bar.set_postfix(files=self._files, failed=self._failed, refresh=False)

    def close(self) -> None:
        self._bar.close()


class RichProgress:
    """A rich progress display; one task per transfer."""

    def __init__(self) -> None:
        from rich.progress import (  # optional dependency: imported only when asked for
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[extra]}"),
        )
        self._tasks: dict[str, Any] = {}

    def __call__(self, event: Event) -> None:
        task = self._tasks.get(event.url)
        if event.kind == "started":
            if not self._tasks:
                self._progress.start()
            self._tasks[event.url] = self._progress.add_task(
                _label(event), total=event.total, extra=""
            )
        elif task is None:
            return
        elif event.kind == "part":
            extra = f"{event.in_flight} in flight, {event.retries} retries"
            self._progress.update(task, advance=event.nbytes or 0, extra=extra)
        elif event.kind in ("finished", "failed"):
            if event.kind == "failed":
                self._progress.update(task, extra=f"failed: {event.error}")
            del self._tasks[event.url]
            if not self._tasks:
                self._progress.stop()


class JsonLines:
    """Every event as one JSON object per line (flushed), e.g. to stderr."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, event: Event) -> None:
        self._stream.write(event.to_json() + "\n")
        self._stream.flush()


def auto_progress(stream: IO[str], *, batch: bool = False) -> EventHook | None:
    """A bar on ``stream`` if it is a terminal and tqdm or rich is installed; else None.
    ``batch``: one bar for all the files of a batch (tqdm only) instead of one per file."""
    if not stream.isatty() or os.environ.get("TERM") == "dumb":
        return None
    try:
        return TqdmBatchProgress(file=stream) if batch else TqdmProgress(file=stream)
    except ImportError:
        pass
    if batch:
        return None
    try:
        return RichProgress()
    except ImportError:
        return None
