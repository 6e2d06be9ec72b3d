"""Measure one contestant in a fresh child process, so that its CPU time and memory are its own.

Two halves talk through one JSON line on the child's stdout:

* In the child, a :class:`Probe` brackets the transfer itself: ``probe.start()`` once imports and
  client set-up are done (it records the baseline RSS), ``probe.stop()`` right after the
  transfer, then ``probe.emit(...)`` prints the line: wall seconds and user+sys CPU seconds of
  the transfer (``getrusage(RUSAGE_SELF)`` deltas: all threads of the process), the baseline RSS
  and the peak RSS (``VmHWM``).
* In the parent, :func:`run_child` starts ``python -m MODULE ARGS...`` (this interpreter, or
  another one: ``python=``), waits for it with a timeout through ``os.wait4`` and adds the
  child's whole-process CPU seconds (start-up and imports included) and ``ru_maxrss`` from that
  rusage.

This module uses the standard library only: children that run under another interpreter (the
peers' virtualenv of ``benchmarks.harness``) import it too.

Why the peak RSS is ``VmHWM`` and not ``ru_maxrss``: on Linux, ``exec`` folds the RSS of the
address space it replaces into the new program's ``ru_maxrss``. ``subprocess`` starts children
with ``vfork``, whose address space *is* the parent's, so every child's ``ru_maxrss`` is at least
the parent's RSS at that moment (a parent holding 500 MiB made a ``python -c pass`` child report
510 MiB). ``VmHWM`` in ``/proc/self/status`` is the high-water mark of the child's own address
space only. ``ru_maxrss`` is kept in the record as ``maxrss_wait4_mib`` for reference.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "MARKER",
    "REPO_ROOT",
    "ChildFailedError",
    "ChildTimeoutError",
    "Measurement",
    "Probe",
    "prefault",
    "proc_status_mib",
    "run_child",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = "@@measure "
"""Prefix of the one stdout line that carries the child's JSON record."""

_MIB = 1024 * 1024
_GIB = 1024**3
_POLL_SECONDS = 0.05


def proc_status_mib(key: str, path: str = "/proc/self/status") -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) or of another such file
    (``/proc/meminfo``) in MiB; None off Linux."""
    try:
        with open(path, encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name == key:
                    return int(value.split()[0]) / 1024
    except OSError:
        return None
    return None


def prefault(nbytes: int) -> float:
    """Touch ``nbytes`` of fresh memory, let it go, and return the seconds that took.

    Why: this machine is a VM whose balloon driver reports free guest pages back to the host,
    which then reclaims them. The next program to touch such a page pays a fault in the
    hypervisor: measured here, 1 GiB of new page-cache file cost 0.7 s of kernel CPU in one
    run and 2.7 s in the next, depending only on how long the memory had lain free. Run just
    before each child, this hands every contestant pages the host has backed, so that no one
    is charged for whoever ran before them. Capped at half of MemAvailable.
    """
    available = proc_status_mib("MemAvailable", "/proc/meminfo")
    if available is not None:
        nbytes = min(nbytes, int(available * _MIB) // 2)
    page = mmap.PAGESIZE
    nbytes -= nbytes % page
    if nbytes <= 0:
        return 0.0
    started = time.perf_counter()
    with mmap.mmap(-1, nbytes) as memory:
        memory[::page] = b"\x01" * (nbytes // page)
    return time.perf_counter() - started


def _cpu_seconds(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


class Probe:
    """The child's side: brackets the transfer and prints the record."""

    def __init__(self) -> None:
        self._created = time.perf_counter()
        self._t0: float | None = None
        self._t1: float | None = None
        self._ru0: resource.struct_rusage | None = None
        self._ru1: resource.struct_rusage | None = None
        self._baseline_rss: float | None = None

    def start(self) -> None:
        """Call when imports and client set-up are done, right before the transfer."""
        self._baseline_rss = proc_status_mib("VmRSS")
        self._ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        """Call right after the transfer returns."""
        self._t1 = time.perf_counter()
        self._ru1 = resource.getrusage(resource.RUSAGE_SELF)

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """``start()`` on entry, ``stop()`` on a normal exit: ``with probe.timed(): transfer()``."""
        self.start()
        yield
        self.stop()

    @property
    def done(self) -> bool:
        """True once both ``start()`` and ``stop()`` ran."""
        return self._t0 is not None and self._t1 is not None

    def record(self, **extra: Any) -> dict[str, Any]:
        if self._t0 is None or self._t1 is None or self._ru0 is None or self._ru1 is None:
            raise RuntimeError("Probe.record() before start() and stop()")
        peak = proc_status_mib("VmHWM")
        if peak is None:  # not Linux: fall back to ru_maxrss (KiB on Linux, bytes on macOS)
            scale = 1 if sys.platform == "darwin" else 1024
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / _MIB
        return {
            "wall_s": self._t1 - self._t0,
            "setup_s": self._t0 - self._created,
            "cpu_user_s": self._ru1.ru_utime - self._ru0.ru_utime,
            "cpu_sys_s": self._ru1.ru_stime - self._ru0.ru_stime,
            "baseline_rss_mib": self._baseline_rss,
            "peak_rss_mib": peak,
            **extra,
        }

    def emit(self, **extra: Any) -> None:
        """Print the record as the marker line on stdout (call once, at the very end)."""
        sys.stdout.write(MARKER + json.dumps(self.record(**extra), sort_keys=True) + "\n")
        sys.stdout.flush()


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """One contestant's run, as seen by the parent."""

    client: str
    direction: str
    size: int
    """Bytes transferred."""
    wall_s: float
    """Wall seconds of the transfer call itself (no interpreter start-up, imports, set-up)."""
    mb_per_s: float
    """``size / wall_s / 1e6``."""
    cpu_s: float
    """User+sys CPU seconds of the child over the transfer (all its threads)."""
    cpu_s_per_gib: float
    """``cpu_s`` per GiB moved (2**30 bytes)."""
    cpu_total_s: float
    """User+sys CPU seconds of the whole child (``os.wait4``): start-up, imports, set-up too."""
    peak_rss_mib: float
    """High-water RSS of the child's own address space (``VmHWM``), MiB."""
    baseline_rss_mib: float | None
    """RSS after imports and client set-up, right before the transfer, MiB."""
    maxrss_wait4_mib: float
    """``ru_maxrss`` from ``os.wait4``: includes the parent's RSS at spawn time (see above)."""
    setup_s: float
    """Seconds from the child's first import of this module to the start of the transfer."""
    process_wall_s: float
    """Wall seconds of the whole child as the parent saw it."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else the child reported (e.g. the library's result)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ChildFailedError(RuntimeError):
    """The child exited non-zero, timed out, or printed no record."""


class ChildTimeoutError(ChildFailedError):
    """The child ran past its timeout and was killed."""


def _tail(path: str, limit: int = 4000) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - limit))
        return f.read().decode("utf-8", "replace")


def _wait(pid: int, timeout: float) -> tuple[int, resource.struct_rusage, bool]:
    """Reap ``pid`` with its rusage; SIGKILL it once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return status, usage, False
            time.sleep(_POLL_SECONDS)
    except BaseException:  # e.g. Ctrl-C in the parent: do not leave the child running
        os.kill(pid, signal.SIGKILL)
        os.wait4(pid, 0)
        raise
    os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    return status, usage, True


def run_child(
    module: str,
    args: list[str],
    *,
    client: str,
    direction: str,
    size: int,
    timeout: float,
    env: dict[str, str] | None = None,
    python: str | None = None,
) -> Measurement:
    """Run ``python -m module *args`` (from the repository root) and measure it.

    ``python`` is the interpreter (default: this one, ``sys.executable``); the repository root
    goes first on the child's ``PYTHONPATH`` so that it finds ``benchmarks`` whatever it is.

    The child must end with ``Probe.emit()``. Raises :class:`ChildFailedError` with the tail of
    its stderr when it fails, times out (it is killed) or reports nothing.
    """
    child_env = dict(os.environ if env is None else env)
    pythonpath = child_env.get("PYTHONPATH")
    child_env["PYTHONPATH"] = (
        str(REPO_ROOT) if not pythonpath else f"{REPO_ROOT}{os.pathsep}{pythonpath}"
    )
    with tempfile.TemporaryDirectory(prefix="measure-") as tmp:
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.perf_counter()
            process = subprocess.Popen(
                [python or sys.executable, "-m", module, *args],
                cwd=REPO_ROOT,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
            status, usage, timed_out = _wait(process.pid, timeout)
            process_wall = time.perf_counter() - started
            # Reaped by os.wait4 above: tell Popen, so it never waits for the pid again.
            process.returncode = os.waitstatus_to_exitcode(status)
        what = f"{client} {direction}"
        if timed_out:
            raise ChildTimeoutError(
                f"{what}: killed after {timeout:.0f} s\n--- stderr tail ---\n{_tail(err_path)}"
            )
        if process.returncode != 0:
            raise ChildFailedError(
                f"{what}: exit status {process.returncode}\n--- stderr tail ---\n{_tail(err_path)}"
            )
        record: dict[str, Any] | None = None
        with open(out_path, encoding="utf-8", errors="replace") as out_text:
            for line in out_text:
                if line.startswith(MARKER):
                    record = json.loads(line[len(MARKER) :])
        if record is None:
            raise ChildFailedError(
                f"{what}: printed no {MARKER.strip()} record\n--- stderr tail ---\n"
                f"{_tail(err_path)}"
            )

    wall = float(record.pop("wall_s"))
    cpu = float(record.pop("cpu_user_s")) + float(record.pop("cpu_sys_s"))
    baseline = record.pop("baseline_rss_mib")
    return Measurement(
        client=client,
        direction=direction,
        size=size,
        wall_s=wall,
        mb_per_s=size / wall / 1e6 if wall > 0 else 0.0,
        cpu_s=cpu,
        cpu_s_per_gib=cpu / (size / _GIB) if size else 0.0,
        cpu_total_s=_cpu_seconds(usage),
        peak_rss_mib=float(record.pop("peak_rss_mib")),
        baseline_rss_mib=None if baseline is None else float(baseline),
        maxrss_wait4_mib=usage.ru_maxrss / 1024,
        setup_s=float(record.pop("setup_s")),
        process_wall_s=process_wall,
        extra=record,
    )
