"""How a download's bytes can land in a new 1 GiB file on this machine, without the network:
fallocate or not, O_DIRECT or the page cache, fsync or not, write size, writer threads.

    .venv/bin/python -m benchmarks.file_writes [--size 1GiB] [--dir DIR] [--repeat 2]

Each variant runs in a fresh child process (its CPU is its own), after ``os.sync()`` and
``prefault()`` (see ``benchmarks/measure.py``), writing page-aligned buffers (as the engine's
pool hands them out) at their offsets from N threads, in a new file beside which nothing else
is written. Prints one row per variant: MB/s (wall, including the fsync when on) and CPU s per
GiB (user+sys, all threads). It answers the question issue 5 asks: what does writing a new
file cost here, and which way of writing costs least.
"""

from __future__ import annotations

import argparse
import itertools
import json
import mmap
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from asynctransfer._core.units import format_size, parse_size
from benchmarks.measure import prefault

_GIB = 1 << 30


def _child(
    path: str, size: int, write: int, threads: int, fallocate: bool, direct: bool, fsync: bool
) -> dict[str, float]:
    buffers = [mmap.mmap(-1, write) for _ in range(threads)]
    for i, buf in enumerate(buffers):
        buf.write(os.urandom(write)[: write - i] + bytes(i))  # touched, and not all alike
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | (getattr(os, "O_DIRECT", 0) if direct else 0)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fd = os.open(path, flags, 0o644)
    if fallocate:
        os.posix_fallocate(fd, 0, size)

    def put(index: int) -> None:
        view = memoryview(buffers[index % threads])
        offset = index * write
        done = 0
        while done < min(write, size - offset):
            done += os.pwrite(fd, view[done:], offset + done)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(-(-size // write))))
    os.ftruncate(fd, size)
    if fsync:
        os.fsync(fd)
    os.close(fd)
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    os.unlink(path)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"mb_per_s": size / (t1 - t0) / 1e6, "cpu_s_per_gib": cpu * _GIB / size}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.file_writes")
    p.add_argument("--size", type=parse_size, default=_GIB)
    p.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(**json.loads(args.child))))
        return 0
    variants = [
        {
            "fsync": fsync,
            "direct": direct,
            "fallocate": fallocate,
            "write": write,
            "threads": threads,
        }
        for fsync, direct, fallocate, write, threads in itertools.product(
            (True, False), (True, False), (True, False), (2 << 20, 8 << 20), (1, 10)
        )
    ]
    results: dict[int, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="file-writes-") as tmp:
        for round_ in range(args.repeat):
            order = list(enumerate(variants))
            for index, v in order if round_ % 2 == 0 else order[::-1]:
                os.sync()
                prefault(2 * args.size + (256 << 20))
                spec = {**v, "path": os.path.join(tmp, "f.bin"), "size": args.size}
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.file_writes", "--child", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=True,
                )
                results.setdefault(index, []).append(json.loads(out.stdout))
    print(f"new file of {format_size(args.size)}, medians of {args.repeat}:")
    print("fsync  O_DIRECT  fallocate  write  threads    MB/s  CPU s/GiB")
    for index, v in enumerate(variants):
        runs = results[index]
        mb = statistics.median(r["mb_per_s"] for r in runs)
        cpu = statistics.median(r["cpu_s_per_gib"] for r in runs)
        print(
            f"{'yes' if v['fsync'] else 'no':5s}  {'yes' if v['direct'] else 'no':8s}  "
            f"{'yes' if v['fallocate'] else 'no':9s}  {format_size(v['write']):>5s}  "
            f"{v['threads']:7d}  {mb:6.0f}  {cpu:9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
