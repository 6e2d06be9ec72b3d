"""The contestants of ``python -m benchmarks http`` and the protocol of their child processes.

The same protocol as the S3 peers (``benchmarks.peers``), with its own spec: each module
(``asynctransfer_http``, ``curl_``, ``aria2c_``) defines ``run(spec: HttpSpec) -> dict`` and
ends with ``sys.exit(child_main(run))``; the suite starts it as ``python -m MODULE SPEC_JSON``
in a fresh process per transfer, always with the project's interpreter. ``run`` wraps the
transfer, and nothing else, in ``with timed():``.

External programs (curl, aria2c) run under a small Python wrapper: :func:`run_program` starts
the program inside ``timed()`` and reaps it with ``os.wait4``, and the record's CPU and peak RSS
are then the *program's* (its rusage; its own ``VmHWM``), not the wrapper's: see
:class:`ProgramRun`.

Standard library only, like ``benchmarks.peers`` and ``benchmarks.measure``: the wrappers
should cost as little as possible, and none of it is timed anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from benchmarks.measure import MARKER, Probe, proc_status_mib

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import FrameType

__all__ = [
    "CASES",
    "HTTP_CONTESTANTS",
    "Case",
    "HttpContestant",
    "HttpSpec",
    "ProgramRun",
    "child_main",
    "run_program",
    "timed",
]

Case = Literal["new", "prealloc", "devnull"]
CASES: dict[str, str] = {
    "new": "download → new file",
    "prealloc": "download → preallocated file",
    "devnull": "download → /dev/null",
}
"""Case id -> label, in the order of the report."""

_MIB = 1024 * 1024
_SAMPLE_SECONDS = 0.005
_PROGRAM_USAGE = "program_usage"
"""Key of ``run``'s result that replaces the record's CPU and RSS with the program's."""


@dataclass(frozen=True, kw_only=True)
class HttpSpec:
    """One download for one child, as plain JSON-able values."""

    contestant: str
    url: str
    """``http://127.0.0.1:PORT/NAME`` on nginx."""
    dest: str
    """The destination file (absent for ``new``, full-size with other bytes for ``prealloc``),
    or ``os.devnull``."""
    case: Case
    size: int
    part_size: int
    """Range size (asynctransfer) or minimum split size (aria2c ``-k``); curl ignores it."""
    concurrency: int
    """Requests / connections in flight; curl ignores it (one stream)."""
    deadline_s: float
    """Seconds the transfer may take before the child gives up (before the suite's own
    timeout kills the child, so that no external program outlives its wrapper)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HttpSpec:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class HttpContestant:
    name: str
    module: str
    """Run as ``python -m MODULE SPEC_JSON``."""
    cases: tuple[Case, ...]
    call: str
    """What the timed region runs, for the report."""
    preallocated: str
    """What a preallocated destination means for it."""
    version_command: tuple[str, ...] | None = None
    """External program: the command whose first line of output is its version."""
    distributions: tuple[str, ...] = ()
    """Python library: whose versions to record."""


_AT_DISTRIBUTIONS = ("asynctransfer", "anyio", "uvloop", "xxhash")
_RENAMES = (
    "writes a temporary file beside the destination and renames it over it, so the old file "
    "is dropped inside the timed region"
)

HTTP_CONTESTANTS: dict[str, HttpContestant] = {
    c.name: c
    for c in (
        HttpContestant(
            "asynctransfer",
            "benchmarks.peers.asynctransfer_http",
            ("new", "prealloc", "devnull"),
            "Transferer.download(url, dest) on uvloop; /dev/null: dest = open(os.devnull, 'wb')",
            _RENAMES + "; fsync before the rename (durable=True, the default)",
            distributions=_AT_DISTRIBUTIONS,
        ),
        HttpContestant(
            "asynctransfer-nofsync",
            "benchmarks.peers.asynctransfer_http",
            ("new", "prealloc"),
            "the same with TransferConfig(durable=False): no fsync before the rename, like "
            "curl and aria2c (files only: /dev/null is the same as asynctransfer's)",
            _RENAMES + "; no fsync",
            distributions=_AT_DISTRIBUTIONS,
        ),
        HttpContestant(
            "curl",
            "benchmarks.peers.curl_",
            ("new", "prealloc", "devnull"),
            "curl -q -sS --fail -o DEST URL (one stream)",
            "opens it O_TRUNC (truncates it, inside the timed region) and rewrites it",
            version_command=("curl", "--version"),
        ),
        HttpContestant(
            "aria2c",
            "benchmarks.peers.aria2c_",
            ("new", "prealloc"),
            "aria2c -x N -s N -k PART --file-allocation=none --allow-overwrite=true ... "
            "-d DIR -o NAME URL (N = --concurrency, at most 16)",
            "with --allow-overwrite=true and no .aria2 control file it restarts from scratch: "
            "opens it O_RDWR|O_CREAT|O_TRUNC (truncates it) and writes the ranges in place",
            version_command=("aria2c", "--version"),
        ),
    )
}
"""Every contestant, in the default order of play. aria2c has no /dev/null case: it writes
ranges at their offsets (``pwrite``) into a file it manages with a ``.aria2`` control file
beside it, which /dev/null cannot be."""

_PROBE: Probe | None = None


@contextlib.contextmanager
def timed() -> Iterator[None]:
    """The measured region of this child's one transfer (use exactly once, in ``run``)."""
    if _PROBE is None:
        raise RuntimeError("timed() outside child_main()")
    if _PROBE.done:
        raise RuntimeError("timed() used twice in one child")
    with _PROBE.timed():
        yield


@dataclass(frozen=True)
class ProgramRun:
    """An external program's run: wall time in ``timed()``, CPU from the ``os.wait4`` that
    reaped it, peak RSS from its own ``VmHWM``.

    Why not ``ru_maxrss`` from that ``wait4``: on Linux ``exec`` folds the high-water RSS of the
    address space it replaces into it, and ``subprocess`` spawns with ``vfork``, whose address
    space is the wrapper's. So ``ru_maxrss`` is at least the wrapper's own peak (a stdlib-only
    Python, ~18 MiB here), and for curl it was exactly that: 17.7 MiB, while curl's own
    ``VmHWM`` is smaller. ``VmHWM`` cannot be read once the program has exited, so a thread
    samples it every few milliseconds while the program runs (:class:`_PeakSampler`); the last
    sample is a lower bound, close for programs that allocate their buffers early, as curl and
    aria2c do. ``ru_maxrss`` is kept (``maxrss_wait4_mib``), and used when the program exited
    before a single sample could be taken.
    """

    returncode: int
    cpu_user_s: float
    cpu_sys_s: float
    peak_rss_mib: float
    peak_rss_source: str
    maxrss_wait4_mib: float
    wrapper_hwm_mib: float | None
    stdout: str

    def usage(self) -> dict[str, Any]:
        """What ``run`` returns under :data:`_PROGRAM_USAGE`, so that the record is the
        program's."""
        return {
            _PROGRAM_USAGE: {
                "cpu_user_s": self.cpu_user_s,
                "cpu_sys_s": self.cpu_sys_s,
                "peak_rss_mib": self.peak_rss_mib,
                "baseline_rss_mib": None,
                "program_peak_rss_source": self.peak_rss_source,
                "program_maxrss_wait4_mib": self.maxrss_wait4_mib,
                "wrapper_hwm_mib": self.wrapper_hwm_mib,
            }
        }


class _PeakSampler(threading.Thread):
    """Samples a running program's ``VmHWM`` (the high-water RSS of its own address space).

    Through a descriptor of its ``/proc/PID`` directory, opened while the program runs: once
    the program is gone, reads through it fail instead of reaching a process that reused the PID.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(name=f"vmhwm-{pid}", daemon=True)
        self._dir = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY)
        self._done = threading.Event()
        self.peak_kib: int | None = None

    def run(self) -> None:
        while True:
            self._sample()
            if self._done.wait(_SAMPLE_SECONDS):
                return

    def finish(self) -> float | None:
        """Stop sampling; the highest ``VmHWM`` seen, in MiB (None: no sample)."""
        self._done.set()
        self.join()
        os.close(self._dir)
        return None if self.peak_kib is None else self.peak_kib / 1024

    def _sample(self) -> None:
        try:
            fd = os.open("status", os.O_RDONLY, dir_fd=self._dir)
            try:
                text = os.read(fd, 16384)
            finally:
                os.close(fd)
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith(b"VmHWM:"):  # absent once the program is a zombie
                kib = int(line.split()[1])
                self.peak_kib = kib if self.peak_kib is None else max(self.peak_kib, kib)
                return


class _DeadlineError(Exception):
    pass


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _DeadlineError


def run_program(argv: Sequence[str], *, deadline_s: float) -> ProgramRun:
    """Run ``argv`` inside ``timed()``: the program's wall time (plus its spawn, ~1 ms).

    Its stdout is captured (into a file: no pipe to fill up while we wait), its stderr is the
    wrapper's (the suite shows its tail when a run fails). Past ``deadline_s`` the program is
    killed by its PID and this raises ``TimeoutError``.
    """
    wrapper_hwm = proc_status_mib("VmHWM")
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    # The programs get their own --max-time / --stop at the deadline; this only catches one that
    # ignores it, a little later.
    signal.setitimer(signal.ITIMER_REAL, deadline_s + 2.0)
    try:
        with tempfile.TemporaryFile() as out:
            with timed():
                # Popen returns once exec succeeded: from here /proc/PID is the program's.
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out)
                sampler = _PeakSampler(process.pid)
                sampler.start()
                try:
                    _, status, usage = os.wait4(process.pid, 0)
                except _DeadlineError:
                    process.kill()
                    process.wait()
                    message = f"{argv[0]} still running after {deadline_s + 2:.0f} s: killed"
                    raise TimeoutError(message) from None
                finally:
                    sampled = sampler.finish()
            out.seek(0)
            text = out.read().decode("utf-8", "replace")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # Reaped by os.wait4 above: tell Popen, so it never waits for the pid again.
    process.returncode = os.waitstatus_to_exitcode(status)
    maxrss = usage.ru_maxrss / 1024  # KiB on Linux
    return ProgramRun(
        returncode=process.returncode,
        cpu_user_s=usage.ru_utime,
        cpu_sys_s=usage.ru_stime,
        peak_rss_mib=maxrss if sampled is None else sampled,
        peak_rss_source=f"VmHWM sampled every {_SAMPLE_SECONDS * 1000:g} ms"
        if sampled is not None
        else "ru_maxrss (exited before the first VmHWM sample)",
        maxrss_wait4_mib=maxrss,
        wrapper_hwm_mib=wrapper_hwm,
        stdout=text,
    )


def child_main(run: Callable[[HttpSpec], dict[str, Any]], argv: Sequence[str] | None = None) -> int:
    """The child's ``main``: ``run(HttpSpec.from_json(argv[0]))`` measured, then one record
    line on stdout (``benchmarks.measure`` reads it)."""
    global _PROBE
    _PROBE = Probe()  # created first, so that its set-up time covers the imports below
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m benchmarks.peers.NAME SPEC_JSON\n")
        return 2
    spec = HttpSpec.from_json(args[0])
    extra = run(spec)
    if not _PROBE.done:
        raise RuntimeError(f"{spec.contestant}: run() never entered timed()")
    program = extra.pop(_PROGRAM_USAGE, None)
    record = _PROBE.record(**extra)
    if program is not None:
        # The wrapper's own figures stay for reference; the measured ones become the program's.
        record["wrapper"] = {
            "cpu_s": record["cpu_user_s"] + record["cpu_sys_s"],
            "peak_rss_mib": record["peak_rss_mib"],
        }
        record.update(program)
    sys.stdout.write(MARKER + json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0
