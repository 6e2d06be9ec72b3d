"""The ``many`` benchmark suite's quick mode, end to end, so that it cannot rot (nothing about
speed).

``python -m benchmarks many --quick`` in a subprocess against the project's local S3 server:
asynctransfer's ``copy_tree``, aioboto3, obstore and s3fs each copy a tree of small files and a
mix (one file of a few parts plus small ones) up and down, and asynctransfer also a tenth of the
small tree. Then: exit status 0, every output checked file by file, and the JSON, the Markdown
table and the PNG chart are there and well-formed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import pytest

from benchmarks.many import DEFAULT_CONTESTANTS
from benchmarks.many_report import DIRECTIONS, TARGET_PEERS, TARGET_TREES
from benchmarks.servers import local_server_available

from .test_bench_harness import PNG_SIGNATURE, _run_bounded

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.timeout(360)
def test_quick_mode_end_to_end(tmp_path: Path) -> None:
    if not local_server_available():
        pytest.skip("this checkout has no `asynctransfer serve`")
    from benchmarks.harness import ensure_peers_venv

    try:
        ensure_peers_venv()  # here, not in the suite's run: a build failure skips, not fails
    except RuntimeError as exc:
        pytest.skip(f"cannot build the peers' virtualenv: {str(exc)[:300]}")
    json_path, chart_path = tmp_path / "out.json", tmp_path / "out.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    command = [sys.executable, "-m", "benchmarks", "many", "--quick"]
    command += ["--json", str(json_path), "--chart", str(chart_path), "--tmpdir", str(tmp_path)]
    stdout, stderr = _run_bounded(command, env, tmp_path, timeout=300)
    assert json_path.exists(), stderr[-5000:]

    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["benchmark"] == "many"
    assert document["failures"] == []
    assert document["warmups"] == []  # --quick: no warm-up
    contestants = list(DEFAULT_CONTESTANTS)
    assert document["parameters"]["contestants"] == contestants
    trees = document["parameters"]["trees"]
    # One round: every contestant copies small and mix both ways; asynctransfer also
    # small-tenth (its peak RSS at a tenth as many files).
    expected = [(c, f"{t}-{d}") for c in contestants for t in ("small", "mix") for d in DIRECTIONS]
    expected += [("asynctransfer", f"small-tenth-{d}") for d in DIRECTIONS]
    runs = document["runs"]
    assert sorted((r["contestant"], r["case"]) for r in runs) == sorted(expected)
    for r in runs:
        check = r["check"]
        assert check["ok"], r
        tree = trees[r["tree"]]
        assert check["expected"] == {"files": tree["files"], "bytes": tree["bytes"]}
        got = check["got"]
        assert (got["files"], got["bytes"]) == (tree["files"], tree["bytes"]), r
        assert got["missing"] == got["extra"] == got["wrong"] == 0, r
        assert r["size"] == tree["bytes"] and r["files"] == tree["files"]
        assert r["wall_s"] > 0 and r["objects_per_s"] > 0 and r["peak_rss_mib"] > 0
        assert r["server_cpu_s"] >= 0
        if r["contestant"] == "asynctransfer":
            result = r["extra"]["result"]  # the BatchResult of copy_tree
            assert result["ok"] and result["files"] == tree["files"], result
            assert result["bytes"] == tree["bytes"]
    multipart = [r for r in runs if r["case"] == "mix-upload"]
    assert all("multipart: 1)" in r["check"]["method"] for r in multipart)  # the big file
    assert document["checks"]["verified"] == document["checks"]["outputs"] == len(runs)

    assert {(row["contestant"], row["case"]) for row in document["summary"]} == set(expected)
    ratios = document["ratios_asynctransfer_over_peer"]
    assert set(ratios["asynctransfer"]) == set(contestants) - {"asynctransfer"}
    targets = document["targets"]
    assert len(targets) == len(TARGET_TREES) * len(DIRECTIONS) * len(TARGET_PEERS) + 2
    assert all(t["met"] in (True, False) and t["value"] > 0 for t in targets)
    for name, contestant in document["contestants"].items():
        assert contestant["versions"].get(name, "-") != "-", name  # the library it is named for
    assert document["harness"]["git"]["commit"]

    # The Markdown: on stdout; the table is one block of lines (header, rule, one row per
    # summary row), all as wide as the header.
    blocks = [block.splitlines() for block in stdout.split("\n\n")]
    (table,) = [b for b in blocks if b[0].startswith("| contestant | case |")]
    assert len(table) == 2 + len(document["summary"])
    assert {line.count("|") for line in table} == {table[0].count("|")}
    lines = stdout.splitlines()
    assert sum("MET**" in line for line in lines) == len(targets)
    assert f"Checks: {len(runs)} of {len(runs)} outputs" in stdout
    assert stdout == document["markdown"]

    with open(chart_path, "rb") as png:
        assert png.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    assert chart_path.stat().st_size > 10_000
