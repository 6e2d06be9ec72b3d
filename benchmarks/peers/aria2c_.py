"""aria2c: N connections on ranges of one file, run by a small Python wrapper.

    aria2c --no-conf=true -x N -s N -k PART --file-allocation=none --allow-overwrite=true
           --auto-file-renaming=false --console-log-level=error --summary-interval=0
           --show-console-readout=false --download-result=hide --stop=DEADLINE
           -d DIR -o NAME URL

The same concurrency and part size as the others, in aria2c's terms: ``-x``/``-s`` = the
suite's ``--concurrency`` (aria2c refuses more than 16 connections per server), ``-k`` (no
range is split below twice this) = ``--part-size``, clamped to aria2c's 1M-1024M. aria2c
splits the file into N segments, one per connection, rather than into parts of that size.
``--file-allocation=none``: nothing allocated before the download (its default, ``prealloc``,
allocates the whole file first); ``--show-console-readout=false``: no progress lines every
half second; ``--no-conf``: no user configuration;
``--stop``: aria2c exits by itself at the child's deadline, so it never outlives a killed
wrapper.

A preallocated destination: with ``--allow-overwrite=true`` and no ``.aria2`` control file
beside it, aria2c "restarts from scratch": it opens the file ``O_RDWR|O_CREAT|O_TRUNC``
(truncating it, inside the timed region, seen with strace) and writes each range at its
offset. Without ``--allow-overwrite`` it refuses an existing file ("being truncated to 0",
exit 13), or with ``--auto-file-renaming`` (its default) writes ``dest.1.bin`` beside it. It
never fsyncs. No /dev/null case: aria2c writes ranges at their offsets into a file it tracks
with a ``NAME.aria2`` control file beside it.

Timed: aria2c's wall time from spawn to reaping; CPU is aria2c's own (``os.wait4``), peak RSS
its own ``VmHWM`` (sampled while it runs: see ``ProgramRun``).
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

from benchmarks.peers.http_child import HttpSpec, child_main, run_program

_MIB = 1024 * 1024
MAX_CONNECTIONS = 16


def run(spec: HttpSpec) -> dict[str, Any]:
    if spec.case == "devnull":
        raise SystemExit("aria2c has no /dev/null case")
    connections = min(spec.concurrency, MAX_CONNECTIONS)
    split_mib = min(max(spec.part_size // _MIB, 1), 1024)
    directory, name = os.path.split(os.path.abspath(spec.dest))
    argv = ["aria2c", "--no-conf=true", f"-x{connections}", f"-s{connections}", f"-k{split_mib}M"]
    argv += [
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--console-log-level=error",
        "--summary-interval=0",
        "--show-console-readout=false",
        "--download-result=hide",
        f"--stop={math.ceil(spec.deadline_s)}",
        "-d",
        directory,
        "-o",
        name,
        spec.url,
    ]
    program = run_program(argv, deadline_s=spec.deadline_s)
    if program.returncode != 0:
        raise SystemExit(f"aria2c exited with {program.returncode}: {program.stdout[-2000:]}")
    return {"argv": argv, "connections": connections, "split_mib": split_mib, **program.usage()}


if __name__ == "__main__":
    sys.exit(child_main(run))
