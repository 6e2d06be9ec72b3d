"""Files and facts both benchmark suites (``s3``, ``http``) need: the random source, a
preallocated destination, an output's digest, and the commit measured."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from typing import Any

import xxhash

from benchmarks.measure import REPO_ROOT

__all__ = ["file_digest", "git_state", "prefill", "random_file", "run_description"]

_CHUNK = 64 * 1024**2
_FILL = b"\x5a" * _CHUNK  # what a preallocated destination holds before the download


def random_file(path: str, size: int) -> str:
    """Write ``size`` random bytes to ``path`` (and fsync); return their xxh3-128."""
    hasher = xxhash.xxh3_128()
    with open(path, "wb") as f:
        remaining = size
        while remaining > 0:
            chunk = os.urandom(min(_CHUNK, remaining))
            f.write(chunk)
            hasher.update(chunk)
            remaining -= len(chunk)
        f.flush()
        os.fsync(f.fileno())
    return hasher.hexdigest()


def prefill(path: str, size: int) -> None:
    """A preallocated destination: ``size`` bytes that are not the source's, on disk."""
    with open(path, "wb") as f:
        remaining = size
        while remaining > 0:
            remaining -= f.write(memoryview(_FILL)[: min(_CHUNK, remaining)])
        f.flush()
        os.fsync(f.fileno())


def file_digest(path: str) -> tuple[int, str]:
    hasher = xxhash.xxh3_128()
    count = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
            count += len(chunk)
    return count, hasher.hexdigest()


def run_description(started: float, **harness: Any) -> dict[str, Any]:
    """The ``machine`` and ``harness`` entries every suite's JSON starts with: where and with
    what it ran, how long it took in all (``started``: ``time.perf_counter()`` at the start),
    the commit; ``harness`` adds the suite's own (the peers' venv, nginx's version...)."""
    return {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "harness": {
            "python": platform.python_version(),
            "matplotlib": importlib.metadata.version("matplotlib"),
            **harness,
            "total_s": time.perf_counter() - started,
            "git": git_state(),
        },
    }


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the work tree differed from it (read-only git calls)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.TimeoutExpired):
        return {}
