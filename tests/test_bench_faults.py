"""The ``faults`` benchmark suite's quick mode, end to end, so that it cannot rot (nothing about
speed).

``python -m benchmarks faults --quick`` in a subprocess: the local endpoint, the fault proxy in
front of it, asynctransfer and boto3 each uploading and downloading 32 MiB (plus a warm-up).
Then: exit status 0, every output byte-checked for both contestants, and the proxy faulted
some data requests (and nothing else).
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import pytest

from benchmarks.faults import CASES, CONTESTANTS_HERE, DATA_OPERATION

from .test_bench_harness import _run_bounded

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.timeout(150)
def test_quick_mode_end_to_end(tmp_path: Path) -> None:
    json_path, chart_path = tmp_path / "out.json", tmp_path / "out.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    command = [sys.executable, "-m", "benchmarks", "faults", "--quick", "--json", str(json_path)]
    command += ["--chart", str(chart_path), "--tmpdir", str(tmp_path)]
    stdout, stderr = _run_bounded(command, env, tmp_path, timeout=120)
    assert json_path.exists(), stderr[-5000:]

    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["benchmark"] == "faults"
    assert document["failures"] == []
    outputs = document["warmups"] + document["runs"]
    # Each contestant: an upload and a download in the warm-up and in the one round.
    cells = sorted((c, case) for c in CONTESTANTS_HERE for case in CASES)
    for records in (document["warmups"], document["runs"]):
        assert sorted((r["contestant"], r["case"]) for r in records) == cells
    for r in outputs:
        assert r["check"]["ok"], r
        assert r["check"]["got"] == r["check"]["expected"], r
    checks = document["checks"]
    assert checks["verified"] == checks["outputs"] == len(outputs)
    for name in CONTESTANTS_HERE:
        mine = checks["by_contestant"][name]
        assert mine["verified"] == mine["outputs"] == 4, name
        assert mine["failed_runs"] == 0, name

    # The proxy faulted data requests, and only those; every fault was followed by a retry.
    attempts = document["attempts"]
    assert len(attempts) == len(outputs)
    assert document["faults_injected"] == sum(a["faulted"] for a in attempts) > 0
    for a in attempts:
        assert a["faulted"] == a["faulted_503"] + a["faulted_reset"], a
        assert a["retries"] >= a["faulted"], a
        assert a["extra_bytes"] >= 0, a  # at least the object went through
        assert a["data_requests"] >= 2, a  # warm-ups are two parts, the round four
        assert DATA_OPERATION["upload"] not in a["other_requests"], a
        assert DATA_OPERATION["download"] not in a["other_requests"], a
    assert set(document["ratios_asynctransfer_over_peer"]) == {"boto3"}
    assert stdout == document["markdown"]
    assert f"Bytes wrong: 0 of {len(outputs)} outputs" in stdout
    assert chart_path.stat().st_size > 10_000
