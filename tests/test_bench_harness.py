"""The benchmark harness's quick mode, end to end, so that it cannot rot (nothing about speed).

``python -m benchmarks s3 --quick`` in a subprocess: it builds the peers' virtualenv if
``benchmarks/peers.txt`` changed (~20-25 s), starts the endpoint, and runs all five contestants
on 32 MiB. Then: exit status 0, every output byte-checked, and the JSON, the Markdown table and
the PNG chart are there and well-formed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.chart import CASES
from benchmarks.peers import CONTESTANTS
from benchmarks.servers import local_server_available

REPO_ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run_bounded(
    command: list[str], env: dict[str, str], tmp: Path, *, timeout: float
) -> tuple[str, str]:
    """Run the harness; past ``timeout``, SIGTERM it (it then stops its server and child) and,
    if it still runs 30 s later, SIGKILL its whole process group (its own session)."""
    out_path, err_path = tmp / "stdout", tmp / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=err, start_new_session=True
        )
        try:
            status = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            status = None
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    assert status is not None, f"timed out after {timeout} s\n{stderr[-5000:]}"
    assert status == 0, f"exit status {status}\n{stdout}\n{stderr[-5000:]}"
    return stdout, stderr


@pytest.mark.timeout(300)
def test_quick_mode_end_to_end(tmp_path: Path) -> None:
    server = "local" if local_server_available() else "moto"
    json_path, chart_path = tmp_path / "out.json", tmp_path / "out.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    command = [sys.executable, "-m", "benchmarks", "s3", "--quick", "--server", server]
    command += ["--json", str(json_path), "--chart", str(chart_path), "--tmpdir", str(tmp_path)]
    stdout, stderr = _run_bounded(command, env, tmp_path, timeout=240)
    assert json_path.exists(), stderr[-5000:]

    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["failures"] == []
    outputs = document["warmups"] + document["runs"]
    # Each contestant: a warm-up up (if it uploads) and down, then in one round an upload (if
    # it uploads) and 2 downloads.
    uploaders = [c for c, info in CONTESTANTS.items() if "upload" in info.directions]
    assert len(document["warmups"]) == len(CONTESTANTS) + len(uploaders)
    assert len(document["runs"]) == 2 * len(CONTESTANTS) + len(uploaders)
    assert all(r["check"]["ok"] for r in outputs)
    assert all(r["check"]["got"] == r["check"]["expected"] for r in outputs)
    assert document["checks"]["verified"] == document["checks"]["outputs"] == len(outputs)
    cells = {(row["contestant"], row["case"]) for row in document["summary"]}
    assert cells == {
        (c, case) for c in CONTESTANTS for case in CASES if case != "upload" or c in uploaders
    }
    assert set(document["ratios_asynctransfer_over_peer"]) == set(CONTESTANTS) - {"asynctransfer"}
    for name, contestant in document["contestants"].items():
        library = CONTESTANTS[name].distributions[0]  # the library the contestant is named for
        assert contestant["versions"].get(library, "-") != "-", name

    # The Markdown table: on stdout, one row per summary row, every row as wide as the header.
    table = [line for line in stdout.splitlines() if line.startswith("| contestant |")]
    assert len(table) == 1
    lines = stdout.splitlines()
    start = lines.index(table[0])
    rows = lines[start + 2 : start + 2 + len(document["summary"])]
    assert all(row.count("|") == table[0].count("|") for row in rows)
    assert f"Byte checks: {len(outputs)} of {len(outputs)} outputs" in stdout
    assert stdout == document["markdown"]

    with open(chart_path, "rb") as png:
        assert png.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    assert chart_path.stat().st_size > 10_000
