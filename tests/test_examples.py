"""The examples run as users would run them: the aiohttp service as a process against moto,
fed over real HTTP; the quickstart notebook in a real Jupyter kernel (nbclient), failing on any
cell error."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import nbclient
import nbformat
import pytest

from asynctransfer.testing import announced_url, stop_process

from .conftest import random_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .conftest import Bucket

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_the_service_streams_bodies_to_s3_and_back(bucket: Bucket) -> None:
    assert bucket.config.endpoint_url is not None
    process = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "service.py"),
            "--bucket",
            bucket.name,
            "--endpoint-url",
            bucket.config.endpoint_url,
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        url = announced_url(process, 30)
        data = random_bytes(12 * 1024 * 1024 + 5)  # past one 8 MiB part: a multipart upload
        # A chunked body of unknown length, as a client streaming a file would send it.
        put = urllib.request.Request(
            f"{url}/objects/dir/big.bin", data=_chunked(data, 64 * 1024), method="PUT"
        )
        with urllib.request.urlopen(put, timeout=60) as response:
            assert response.status == 200
            assert b'"parts": 2' in response.read()
        assert bucket.read("dir/big.bin") == data
        with urllib.request.urlopen(f"{url}/objects/dir/big.bin", timeout=60) as response:
            assert response.read() == data
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{url}/objects/nope", timeout=30)
        assert missing.value.code == 404
        missing.value.close()
    finally:
        stop_process(process)
        assert process.stderr is not None
        errors = process.stderr.read().decode()
        process.stderr.close()
        assert process.stdout is not None
        process.stdout.close()
    assert "Traceback" not in errors, errors


def test_the_quickstart_notebook_runs_in_a_real_kernel(tmp_path: Path) -> None:
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
