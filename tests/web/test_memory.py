"""URL downloads keep the memory bound of S3 downloads: a fixed baseline plus ``max_memory``,
whatever the file size, into a file (ranges in parallel, O_DIRECT), to a stream (bytes held
until their turn) and from a server that ignores Range (one stream through one buffer).

Each download runs in a child process so that its peak RSS (VmHWM) is its own; see
``tests/engine/test_memory.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest
import xxhash

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import StaticServer

MiB = 1024 * 1024
BASELINE = 80 * MiB
PART = 2 * MiB
MAX_MEMORY = 6 * PART
SIZE = 11 * MAX_MEMORY + 4097  # 132 MiB: over the O_DIRECT threshold, an unaligned tail

CHILD = textwrap.dedent(
    """
    import json, os, sys
    import anyio
    import asynctransfer
    from asynctransfer import TransferConfig

    url, dest, part, memory = sys.argv[1:5]
    config = TransferConfig(
        part_size=int(part), max_memory=int(memory), max_concurrency=4,
        min_part_size=int(part),
    )

    async def main():
        if dest == "-":
            with open(os.devnull, "wb") as sink:
                return await asynctransfer.download(url, sink, config=config)
        return await asynctransfer.download(url, dest, config=config)

    result = anyio.run(main, backend_options={"use_uvloop": True})
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
    print(json.dumps({"peak_rss": peak, "xxh3": result.xxh3_128, "parts": result.parts}))
    """
)


@pytest.fixture(scope="module")
def big_file() -> tuple[str, bytes]:
    data = os.urandom(SIZE)
    return "memory-big.bin", data


def _download(url: str, dest: str) -> dict[str, int | str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, dest, str(PART), str(MAX_MEMORY)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    report: dict[str, int | str] = json.loads(out.stdout)
    return report


@pytest.mark.parametrize("dest", ["file", "stream"])
def test_parallel_ranges_stay_in_budget(
    nginx: StaticServer, tmp_path: Path, big_file: tuple[str, bytes], dest: str
) -> None:
    name, data = big_file
    url = nginx.put(name, data)
    path = str(tmp_path / "out.bin") if dest == "file" else "-"
    report = _download(url, path)
    assert report["xxh3"] == xxhash.xxh3_128_hexdigest(data)
    assert report["parts"] == -(-SIZE // PART)
    if dest == "file":
        with open(path, "rb") as f:
            assert f.read() == data
    peak = int(report["peak_rss"])
    sys.stderr.write(f"{dest}: peak RSS {peak / MiB:.1f} MiB\n")
    assert peak <= BASELINE + MAX_MEMORY, f"peak RSS {peak / MiB:.1f} MiB for {SIZE / MiB:.0f} MiB"


def test_one_stream_stays_in_budget(
    simple_http_server: StaticServer, tmp_path: Path, big_file: tuple[str, bytes]
) -> None:
    name, data = big_file
    url = simple_http_server.put(name, data)
    dest = tmp_path / "out.bin"
    report = _download(url, str(dest))
    assert report["xxh3"] == xxhash.xxh3_128_hexdigest(data)
    assert report["parts"] == 1  # http.server ignores Range
    peak = int(report["peak_rss"])
    sys.stderr.write(f"one stream: peak RSS {peak / MiB:.1f} MiB\n")
    assert peak <= BASELINE + MAX_MEMORY
