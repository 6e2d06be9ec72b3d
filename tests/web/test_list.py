"""``copy_list`` / ``cp --from-list`` with http:// URLs from a real server, and the CLI too."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from asynctransfer import TransferConfig, Transferer

from ..conftest import SMALL_MIN_PART, random_bytes
from ..test_cli import run_cli

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import HttpOrigin


async def test_a_list_of_urls_lands_byte_exact(http_origin: HttpOrigin, tmp_path: Path) -> None:
    files = {f"set/file-{i}.bin": random_bytes(1000 * i + 7, seed=i) for i in range(12)}
    files["set/large.bin"] = random_bytes(3 * 256 * 1024 + 5, seed=99)  # several ranges
    urls = {name: http_origin.put(name, data) for name, data in files.items()}
    listing = tmp_path / "urls.txt"
    lines = [f"{urls[name]}\n" for name in files if name != "set/file-3.bin"]
    lines += [f"{urls['set/file-3.bin']} renamed/three.bin\n", f"{http_origin.url_for('nope')}\n"]
    listing.write_text("".join(lines), encoding="utf-8")
    config = TransferConfig(part_size=256 * 1024, min_part_size=SMALL_MIN_PART, max_concurrency=4)
    async with Transferer(config) as t:
        result = await t.copy_list(listing, tmp_path / "out")
    assert result.files == len(files)
    assert [f.error_type for f in result.failures] == ["NotFoundError"]
    for name, data in files.items():
        target = "renamed/three.bin" if name == "set/file-3.bin" else name.split("/")[-1]
        assert (tmp_path / "out" / target).read_bytes() == data

    done = run_cli("cp", "--from-list", str(listing), str(tmp_path / "cli"), "--json")
    assert done.returncode == 1  # the missing one
    record = json.loads(done.stdout)
    assert (record["files"], record["failed"]) == (len(files), 1)
    assert (tmp_path / "cli" / "large.bin").read_bytes() == files["set/large.bin"]
