"""A minimal S3 stand-in that discards uploads and serves downloads from files.

For measuring client CPU without a slow server in the way (moto reads request bodies in small
pieces and copies whole objects per ranged GET, so the client mostly waits). Uploads
(PutObject, Create/UploadPart/Complete/AbortMultipartUpload) are read to the end and dropped;
GET and HEAD of ``/bucket/key`` serve the file ``ROOT/bucket/key`` with sendfile, Range and
If-Match (aiohttp's FileResponse). Not a store: issue 4 brings the real local endpoint.

    python -m benchmarks.s3_sink --port 0 --root DIR  # prints "listening on http://127.0.0.1:P"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Iterator


def _xml(body: str) -> web.Response:
    return web.Response(
        text=f'<?xml version="1.0" encoding="UTF-8"?>{body}', content_type="application/xml"
    )


async def handle(request: web.Request) -> web.StreamResponse:
    query = request.query
    bucket = request.match_info["bucket"]
    key = request.match_info.get("key", "")
    if request.method in ("GET", "HEAD") and key:
        path = Path(request.app[ROOT], bucket, key).resolve()  # noqa: ASYNC240 (bench only)
        if not path.is_relative_to(request.app[ROOT]) or not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)
    if request.method == "PUT" and key:  # PutObject / UploadPart: read it all, keep nothing
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        return web.Response(headers={"ETag": f'"{uuid.uuid4().hex}"'})
    if request.method == "POST" and "uploads" in query:
        return _xml(
            f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
            f"<UploadId>{uuid.uuid4().hex}</UploadId></InitiateMultipartUploadResult>"
        )
    if request.method == "POST" and "uploadId" in query:
        await request.read()
        return _xml(
            f"<CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
            f'<ETag>"{uuid.uuid4().hex}-1"</ETag></CompleteMultipartUploadResult>'
        )
    if request.method == "DELETE":
        return web.Response(status=204)
    if request.method in ("PUT", "HEAD"):  # CreateBucket, HeadBucket
        return web.Response()
    return web.Response(status=501)


ROOT = web.AppKey("root", Path)


def app(root: Path) -> web.Application:
    application = web.Application(client_max_size=6 * 1024**3)
    application[ROOT] = root.resolve()
    application.router.add_route("*", "/{bucket}/{key:.*}", handle)
    application.router.add_route("*", "/{bucket}", handle)
    return application


@contextlib.contextmanager
def sink_server(root: Path | str = "/nonexistent") -> Iterator[str]:
    """Run the sink in a child process, serving GETs from ``root``; yield its endpoint URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.s3_sink", "--port", "0", "--root", str(root)],
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


async def _serve(port: int, root: Path) -> None:
    runner = web.AppRunner(app(root), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening on http://127.0.0.1:{bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--root", type=Path, default=Path("/nonexistent"))
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.root))


if __name__ == "__main__":
    main()
