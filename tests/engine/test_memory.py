"""Peak memory stays within a fixed baseline plus ``max_memory``, whatever the file size.

The transfer runs in a child process so that its peak RSS is its own: the interpreter, imports
and client (~62 MiB here) plus the part buffers, never the file. The peak is VmHWM, not
``ru_maxrss``: on Linux ru_maxrss survives exec, so a child would report its parent's peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

from ..conftest import SMALL_MIN_PART

if TYPE_CHECKING:
    from pathlib import Path

    from ..conftest import Bucket

MiB = 1024 * 1024
BASELINE = 80 * MiB

CHILD = textwrap.dedent(
    """
    import json, sys
    import anyio
    import asynctransfer
    from asynctransfer import TransferConfig

    endpoint, src, url, dest, part, memory = sys.argv[1:7]
    config = TransferConfig(
        endpoint_url=endpoint, part_size=int(part), max_memory=int(memory),
        max_concurrency=4, min_part_size=int(part),
    )

    async def main():
        up = await asynctransfer.upload(src, url, config=config)
        down = await asynctransfer.download(url, dest, config=config)
        return up.xxh3_128, down.xxh3_128

    up, down = anyio.run(main, backend_options={"use_uvloop": True})
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
    print(json.dumps({"peak_rss": peak, "up": up, "down": down}))
    """
)


def test_peak_rss_is_bounded_by_budget_not_file_size(bucket: Bucket, tmp_path: Path) -> None:
    part = max(SMALL_MIN_PART, MiB)
    max_memory = 6 * part
    size = 10 * max_memory + 12345  # well over 8x the budget
    src = tmp_path / "big.bin"
    # Written in chunks so the test process itself stays small too.
    with open(src, "wb") as f:
        f.writelines(os.urandom(MiB) for _ in range(size // MiB))
        f.write(os.urandom(size % MiB))
    dest = tmp_path / "back.bin"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(bucket.config.endpoint_url),
            str(src),
            bucket.url("big"),
            str(dest),
            str(part),
            str(max_memory),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    sys.stderr.write(f"peak RSS {report['peak_rss'] / MiB:.1f} MiB\n")
    assert report["up"] == report["down"]
    with open(src, "rb") as a, open(dest, "rb") as b:
        while chunk := a.read(MiB):
            assert chunk == b.read(MiB)
    assert report["peak_rss"] <= BASELINE + max_memory, (
        f"peak RSS {report['peak_rss'] / MiB:.1f} MiB exceeds "
        f"{(BASELINE + max_memory) / MiB:.0f} MiB for a {size / MiB:.0f} MiB file"
    )
