"""A minimal S3 stand-in that takes multipart uploads and discards the bytes.

For measuring client CPU without a slow server in the way (moto reads request bodies in small
pieces, which makes the client's event loop wake far more often than a real store would). It
answers CreateMultipartUpload, UploadPart (reads the whole body), and AbortMultipartUpload.

    python -m benchmarks.s3_sink --port 0   # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Iterator


async def handle(request: web.Request) -> web.StreamResponse:
    query = request.query
    if request.method == "PUT" and "partNumber" in query:
        md5 = hashlib.md5(usedforsecurity=False)
        async for chunk in request.content.iter_any():
            md5.update(chunk)
        return web.Response(headers={"ETag": f'"{md5.hexdigest()}"'})
    if request.method == "POST" and "uploads" in query:
        key = request.match_info["key"]
        bucket = request.match_info["bucket"]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult>'
            f"<Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>{uuid.uuid4().hex}</UploadId>"
            "</InitiateMultipartUploadResult>"
        )
        return web.Response(text=body, content_type="application/xml")
    if request.method == "DELETE":
        return web.Response(status=204)
    if request.method == "PUT":  # CreateBucket
        return web.Response()
    return web.Response(status=501)


def app() -> web.Application:
    application = web.Application(client_max_size=6 * 1024**3)
    application.router.add_route("*", "/{bucket}/{key:.*}", handle)
    application.router.add_route("*", "/{bucket}", handle)
    return application


@contextlib.contextmanager
def sink_server() -> Iterator[str]:
    """Run the sink in a child process; yield its endpoint URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.s3_sink", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        process.terminate()
        process.wait(10)


async def _serve(port: int) -> None:
    runner = web.AppRunner(app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening on http://127.0.0.1:{bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
