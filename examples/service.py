"""A small aiohttp service that streams request bodies to S3 and objects back, with no temporary
file: one ``asynctransfer.Transferer`` for the whole service, so its limits (requests in flight,
buffer memory, bytes/s) hold across all requests together.

    PUT /objects/{key}   the body goes to s3://BUCKET/{key} as it arrives (multipart past one part)
    GET /objects/{key}   the object, in order, from parallel ranges

    python examples/service.py --bucket B [--endpoint-url URL] [--port 8080]

It prints ``listening on http://HOST:PORT`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from aiohttp import web

import asynctransfer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TRANSFERER = web.AppKey("transferer", asynctransfer.Transferer)
BUCKET = web.AppKey("bucket", str)


async def put_object(request: web.Request) -> web.Response:
    url = f"s3://{request.app[BUCKET]}/{request.match_info['key']}"
    # request.content has an async read(n): the body is uploaded as it comes in.
    result = await request.app[TRANSFERER].upload(request.content, url)
    return web.json_response(
        {"url": result.url, "size": result.size, "parts": result.parts, "xxh3_128": result.xxh3_128}
    )


async def get_object(request: web.Request) -> web.StreamResponse:
    url = f"s3://{request.app[BUCKET]}/{request.match_info['key']}"
    chunks = request.app[TRANSFERER].open_read(url)
    try:
        first = await anext(chunks)  # a missing key fails here, before any header is sent
    except StopAsyncIteration:
        first = b""
    except asynctransfer.NotFoundError:
        raise web.HTTPNotFound(text=f"no such object: {url}\n") from None
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


def make_app(bucket: str, config: asynctransfer.TransferConfig) -> web.Application:
    app = web.Application(client_max_size=0)
    app[BUCKET] = bucket

    async def session(app: web.Application) -> AsyncIterator[None]:
        async with asynctransfer.Transferer(config) as transferer:
            app[TRANSFERER] = transferer
            yield

    app.cleanup_ctx.append(session)
    app.router.add_put("/objects/{key:.+}", put_object)
    app.router.add_get("/objects/{key:.+}", get_object)
    return app


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    config = asynctransfer.TransferConfig(endpoint_url=args.endpoint_url)
    runner = web.AppRunner(make_app(args.bucket, config))
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sys.stdout.write(f"listening on http://{args.host}:{port}\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
