"""The ``http`` benchmark suite's quick mode, end to end, so that it cannot rot (nothing about
speed).

``python -m benchmarks http --quick`` in a subprocess: nginx serving 32 MiB, every contestant
in each of its cases once (plus a warm-up each). Then: exit status 0, every output checked, and
the JSON, the Markdown table and the PNG chart are there and well-formed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from benchmarks.nginx import nginx_binary
from benchmarks.peers.http_child import CASES, HTTP_CONTESTANTS

from .test_bench_harness import _run_bounded

REPO_ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(240)
def test_quick_mode_end_to_end(tmp_path: Path) -> None:
    missing = [p for p in ("curl", "aria2c") if shutil.which(p) is None]
    missing += [] if nginx_binary() else ["nginx"]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    contestants = list(HTTP_CONTESTANTS)  # all of them, asynctransfer's two included
    json_path, chart_path = tmp_path / "out.json", tmp_path / "out.png"
    command = [sys.executable, "-m", "benchmarks", "http", "--quick"]
    command += ["--contestants", ",".join(contestants)]
    # No --tmpdir: nginx's worker (user nobody when the tests run as root) could not reach
    # files under pytest's tmp_path, whose parents are 0700. The suite's own temporary
    # directory is in the system temp dir, and removed when it exits.
    command += ["--json", str(json_path), "--chart", str(chart_path)]
    stdout, stderr = _run_bounded(command, dict(os.environ), tmp_path, timeout=150)
    assert json_path.exists(), stderr[-5000:]

    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["benchmark"] == "http"
    assert document["failures"] == []
    assert document["parameters"]["contestants"] == contestants
    cells = [(c, case) for c in contestants for case in HTTP_CONTESTANTS[c].cases]
    # One warm-up and one timed run per (contestant, case): --quick is one round.
    for records in (document["warmups"], document["runs"]):
        assert sorted((r["contestant"], r["case"]) for r in records) == sorted(cells)
    assert all(r["repeat"] == 0 for r in document["runs"])
    assert all(r["repeat"] is None for r in document["warmups"])

    outputs = document["warmups"] + document["runs"]
    source = {r["check"]["expected"]["xxh3_128"] for r in document["runs"]} - {None}
    assert len(source) == 1
    for r in outputs:
        check = r["check"]
        assert check["ok"], r
        assert check["got"] == check["expected"], r
        size_only = r["contestant"] == "curl" and r["case"] == "devnull"
        assert (check["expected"]["xxh3_128"] is None) == size_only, r
        assert check["expected"]["size"] == r["size"] > 0
        assert r["wall_s"] > 0 and r["cpu_s"] >= 0 and r["peak_rss_mib"] > 0
        assert r["server_cpu_s"] >= 0
        if HTTP_CONTESTANTS[r["contestant"]].version_command is not None:
            # An external program: the record's CPU and RSS are the program's, not the wrapper's.
            assert "wrapper" in r["extra"] and "program_maxrss_wait4_mib" in r["extra"]
    assert document["checks"]["verified"] == document["checks"]["outputs"] == len(outputs)

    assert {(row["contestant"], row["case"]) for row in document["summary"]} == set(cells)
    if "asynctransfer" in contestants:
        assert set(document["ratios"]["asynctransfer"]) == set(contestants) - {"asynctransfer"}
    versions = {name: c["versions"] for name, c in document["contestants"].items()}
    assert set(versions) == set(contestants)
    for name in contestants:
        info = HTTP_CONTESTANTS[name]
        if info.version_command is not None:
            assert versions[name][info.version_command[0]].startswith(("curl ", "aria2 version"))
        for dist in info.distributions[:1]:  # the library the contestant is named for
            assert versions[name][dist] != "-"
    assert document["harness"]["nginx"].startswith("nginx version: nginx/")

    # The Markdown table: on stdout, one row per summary row, every row as wide as the header.
    table = [line for line in stdout.splitlines() if line.startswith("| contestant |")]
    assert len(table) == 1
    lines = stdout.splitlines()
    start = lines.index(table[0])
    rows = lines[start + 2 : start + 2 + len(document["summary"])]
    assert all(row.count("|") == table[0].count("|") for row in rows)
    assert {row.split("|")[2].strip() for row in rows} <= set(CASES.values())
    assert f"Byte checks: {len(outputs)} of {len(outputs)} outputs" in stdout
    assert stdout == document["markdown"]

    with open(chart_path, "rb") as png:
        assert png.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    assert chart_path.stat().st_size > 10_000
