"""Row 30 of the reliability matrix: packet loss and a bandwidth cap. A network namespace of
its own (so the host's loopback is untouched) whose loopback drops 1% of incoming packets at
random (nftables) behind a 200 Mbit/s token bucket (tc tbf); the server and the client both run
inside it, on its 127.0.0.1. Needs root, ``ip``, ``tc`` and ``nft`` (CI installs them); skipped
otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("netns_child.py")
RULES = """
table inet chaos {
  chain input {
    type filter hook input priority 0; policy accept;
    numgen random mod 100 < 1 drop
  }
}
"""

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "tc", "nft")),
        reason="row 30 needs root and ip, tc, nft",
    ),
    pytest.mark.timeout(240),
]


def _run(*args: str, stdin: str | None = None) -> None:
    subprocess.run(args, input=stdin, text=True, check=True, capture_output=True, timeout=30)


def test_packet_loss_and_a_bandwidth_cap_still_end_byte_exact() -> None:
    ns = f"asynctransfer-{os.getpid()}"
    _run("ip", "netns", "add", ns)
    try:
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        _run(
            "ip",
            "netns",
            "exec",
            ns,
            "tc",
            "qdisc",
            "add",
            "dev",
            "lo",
            "root",
            "tbf",
            "rate",
            "200mbit",
            "burst",
            "256kb",
            "latency",
            "100ms",
        )
        _run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=RULES)
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, str(CHILD)],
            capture_output=True,
            text=True,
            timeout=200,
            check=False,
            env=os.environ.copy(),
        )
    finally:
        _run("ip", "netns", "del", ns)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["same"], result
