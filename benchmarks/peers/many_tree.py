"""What every child of ``python -m benchmarks many`` shares: the local tree, keys, the loop.

A child gets the S3 suite's :class:`benchmarks.peers.Spec` with other meanings for two fields:
``key`` is the **prefix** (``run/.../``, ending in ``/``) and ``file`` the **local directory**
(upload: the source tree; download: where the tree goes, which does not exist yet); ``size``
is the bytes of the whole tree. A file's key is the prefix plus its path relative to the
directory, with ``/`` separators. Files larger than ``part_size`` (the mix's big one) go by
each library's own multipart or ranged path, the others by one request each.

Standard library only (the peers' interpreter imports it as well as the project's).
"""

from __future__ import annotations

import asyncio
import importlib
import os
from typing import TYPE_CHECKING, Any, TypeVar

from benchmarks.peers import timed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable

    from benchmarks.peers import Spec

__all__ = ["copy_timed", "gather_limited", "local_files", "local_path", "run_on_uvloop"]

T = TypeVar("T")


def local_files(root: str) -> list[tuple[str, str, int]]:
    """Every regular file under ``root``: (path relative to it with ``/``, full path, size)."""
    found: list[tuple[str, str, int]] = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            found.append((relative, path, os.path.getsize(path)))
    return found


def local_path(spec: Spec, key: str) -> str:
    """Where the object ``key`` (under ``spec.key``) goes below ``spec.file``; its directory is
    created."""
    if not key.startswith(spec.key):
        raise ValueError(f"{key!r} is not under the prefix {spec.key!r}")
    path = os.path.join(spec.file, *key[len(spec.key) :].split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


async def gather_limited(
    limit: int, items: Iterable[T], work: Callable[[T], Awaitable[object]]
) -> None:
    """``work(item)`` for every item, at most ``limit`` at once: ``asyncio.gather`` of one
    coroutine per item, each waiting on one ``asyncio.Semaphore(limit)``, as a user writes it."""
    semaphore = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with semaphore:
            await work(item)

    await asyncio.gather(*(one(item) for item in items))


def run_on_uvloop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``main()`` to completion on a fresh uvloop event loop (as the S3 suite's asyncio peers)."""
    uvloop: Any = importlib.import_module("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def copy_timed(
    spec: Spec,
    put: Callable[[tuple[str, str, int]], Awaitable[object]],
    listing: Callable[[], AsyncIterator[tuple[str, int]]],
    get: Callable[[tuple[str, int]], Awaitable[object]],
) -> int:
    """The timed region of a per-file client; returns the files copied. Up: walk the
    directory, then ``put((relative, path, size))`` per file; down: ``listing()`` to the end,
    then ``get((key, size))`` per key; ``spec.concurrency`` at a time (:func:`gather_limited`)."""
    with timed():
        if spec.direction == "upload":
            files = local_files(spec.file)
            await gather_limited(spec.concurrency, files, put)
            return len(files)
        keys = [item async for item in listing()]
        await gather_limited(spec.concurrency, keys, get)
        return len(keys)
