"""curl: one stream, ``curl -q -sS --fail -o DEST URL``, run by a small Python wrapper.

``-q`` first (no ``.curlrc``), ``--max-time`` at the child's deadline so that curl never
outlives a wrapper that was killed, ``-w '%{size_download} %{http_code}'`` on stdout: for the
``/dev/null`` case the size is the only check there is (the bytes are gone).

A preallocated destination: curl opens it ``O_WRONLY|O_CREAT|O_TRUNC``, so it truncates the
old file (inside the timed region) and writes it again from the start. It never fsyncs.

Timed: curl's wall time from spawn to reaping (``benchmarks.peers.http_child.run_program``);
CPU is curl's own (``os.wait4``), peak RSS its own ``VmHWM`` (sampled while it runs: see
``ProgramRun``).
"""

from __future__ import annotations

import math
import sys
from typing import Any

from benchmarks.peers.http_child import HttpSpec, child_main, run_program


def run(spec: HttpSpec) -> dict[str, Any]:
    argv = ["curl", "-q", "-sS", "--fail", "--max-time", str(math.ceil(spec.deadline_s))]
    argv += ["-w", "%{size_download} %{http_code}", "-o", spec.dest, spec.url]
    program = run_program(argv, deadline_s=spec.deadline_s)
    if program.returncode != 0:
        raise SystemExit(f"curl exited with {program.returncode}: {program.stdout!r}")
    size_download, http_code = program.stdout.split()
    return {
        "argv": argv,
        "size_download": int(float(size_download)),
        "http_code": int(http_code),
        **program.usage(),
    }


if __name__ == "__main__":
    sys.exit(child_main(run))
