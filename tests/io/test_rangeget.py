"""The ranged-GET client against a real TCP server on 127.0.0.1 that answers byte for byte as
each test scripts it: heads split across packets, bodies glued to heads, keep-alive, closes,
stalls, lies about lengths."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import anyio
import pytest

from asynctransfer import NetworkError, ProtocolViolationError, TransferTimeoutError
from asynctransfer._io.rangeget import RangeClient, proxy_applies

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader, server: Server) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    server.requests.append(head)
    return head


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> Server:
        state = Server("")

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            try:
                await script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        state.url = f"http://127.0.0.1:{port}/bucket/key?X-Amz-Signature=abc"
        script.__dict__["state"] = state
        return state

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


_clients: list[RangeClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def client(read_timeout: float = 5.0) -> RangeClient:
    c = RangeClient(max_idle=4, connect_timeout=5.0, read_timeout=read_timeout)
    _clients.append(c)
    return c


def ok_206(body: bytes, offset: int, total: int, extra: bytes = b"") -> bytes:
    end = offset + len(body) - 1
    return (
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n"
        b"Content-Range: bytes %d-%d/%d\r\n%s\r\n" % (len(body), offset, end, total, extra)
    ) + body


async def test_body_lands_in_the_buffer_and_connections_are_reused(
    serve: Callable[[Script], Awaitable[Server]],
) -> None:
    data = os.urandom(300_000)
    state: Server

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_request(reader, state)
            offset = int(head.split(b"bytes=")[1].split(b"-")[0])
            body = data[offset : offset + 100_000]
            response = ok_206(body, offset, len(data))
            # Head and body split awkwardly: mid-head, then the rest glued to the body.
            writer.write(response[:7])
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(response[7:])
            await writer.drain()

    state = await serve(script)
    c = client()
    out = bytearray(len(data))
    for offset in range(0, len(data), 100_000):
        view = memoryview(out)[offset : offset + 100_000]
        head, body = await c.get_into(
            state.url, [("Range", f"bytes={offset}-{offset + 99_999}")], view
        )
        assert (head.status, body) == (206, b"")
    c.close()
    assert out == data
    assert state.connections == 1, "keep-alive connection not reused"
    assert state.requests[0].startswith(b"GET /bucket/key?X-Amz-Signature=abc HTTP/1.1\r\n")
    assert b"Accept-Encoding: identity\r\n" in state.requests[0]


async def test_error_answer_returns_its_body(serve: Callable[[Script], Awaitable[Server]]) -> None:
    xml = b"<Error><Code>NoSuchKey</Code><Message>nope</Message></Error>"
    state: Server

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, state)
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(xml), xml))
        await writer.drain()

    state = await serve(script)
    target = bytearray(b"untouched")
    head, body = await client().get_into(state.url, [], memoryview(target))
    assert head.status == 404
    assert body == xml
    assert target == b"untouched"


async def test_connection_close_is_not_reused(serve: Callable[[Script], Awaitable[Server]]) -> None:
    state: Server

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, state)
        writer.write(ok_206(b"abcd", 0, 8, b"Connection: close\r\n"))
        await writer.drain()

    state = await serve(script)
    c = client()
    for _ in range(2):
        head, _ = await c.get_into(state.url, [], memoryview(bytearray(4)))
        assert head.status == 206
    assert state.connections == 2


@pytest.mark.parametrize(
    ("response", "error", "match"),
    [
        (b"HTTP/1.1 206 X\r\nContent-Length: 4\r\n\r\nabcdEXTRA", ProtocolViolationError, "more"),
        (b"HTTP/1.1 206 X\r\nContent-Length: 8\r\n\r\nabcd", NetworkError, "closed"),
        (b"HTTP/1.1 206 X\r\nContent-Le", NetworkError, "closed"),
        (b"HTTP/9 206 X\r\n\r\n", ProtocolViolationError, "status line"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000, ProtocolViolationError, "larger"),
    ],
    ids=["body-too-long", "body-cut", "head-cut", "bad-status-line", "endless-head"],
)
async def test_broken_answers_fail_clearly(
    serve: Callable[[Script], Awaitable[Server]],
    response: bytes,
    error: type[Exception],
    match: str,
) -> None:
    state: Server

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, state)
        writer.write(response)
        await writer.drain()
        await asyncio.sleep(0.05)

    state = await serve(script)
    with pytest.raises(error, match=match):
        await client().get_into(state.url, [], memoryview(bytearray(4)))


async def test_a_stall_times_out(serve: Callable[[Script], Awaitable[Server]]) -> None:
    state: Server

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, state)
        writer.write(b"HTTP/1.1 206 X\r\nContent-Length: 8\r\n\r\nab")
        await writer.drain()
        await asyncio.sleep(5)

    state = await serve(script)
    with pytest.raises(TransferTimeoutError, match=r"no data for 0\.3 s"):
        await client(read_timeout=0.3).get_into(state.url, [], memoryview(bytearray(8)))


async def test_slow_but_steady_body_is_not_a_stall(
    serve: Callable[[Script], Awaitable[Server]],
) -> None:
    state: Server

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, state)
        writer.write(b"HTTP/1.1 206 X\r\nContent-Length: 8\r\n\r\n")
        for byte in b"abcdefgh":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    state = await serve(script)
    target = bytearray(8)
    head, _ = await client(read_timeout=0.3).get_into(state.url, [], memoryview(target))
    assert (head.status, target) == (206, bytearray(b"abcdefgh"))


async def test_connection_refused_is_a_network_error() -> None:
    with pytest.raises(NetworkError, match="cannot connect"):
        await client().get_into("http://127.0.0.1:1/x", [], memoryview(bytearray(1)))


def test_proxy_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not proxy_applies("http://s3.example.com/b/k")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert proxy_applies("http://s3.example.com/b/k")
    assert not proxy_applies("https://s3.example.com/b/k")
    monkeypatch.setenv("NO_PROXY", "s3.example.com")
    assert not proxy_applies("http://s3.example.com/b/k")


async def test_a_closed_idle_connection_is_retried_once_on_a_new_one(
    serve: Callable[[Script], Awaitable[Server]],
) -> None:
    state: Server

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, state)
        writer.write(ok_206(b"abcd", 0, 8))
        await writer.drain()
        # Keep-alive was implied, but the server closes the idle connection right away.

    state = await serve(script)
    c = client()
    for _ in range(3):
        target = bytearray(4)
        await asyncio.sleep(0.05)  # let the close arrive before the next request
        head, _ = await c.get_into(state.url, [], memoryview(target))
        assert (head.status, target) == (206, bytearray(b"abcd"))
    assert state.connections == 3


async def test_cancelling_a_stalled_get_returns_at_once_and_drops_the_connection(
    serve: Callable[[Script], Awaitable[Server]],
) -> None:
    state: Server
    closed = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, state)
        writer.write(b"HTTP/1.1 206 X\r\nContent-Length: 8\r\n\r\nab")
        await writer.drain()
        await reader.read()  # until the client lets go
        closed.set()

    state = await serve(script)
    target = bytearray(8)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with anyio.move_on_after(0.3) as scope:
        await client(read_timeout=30).get_into(state.url, [], memoryview(target))
    assert scope.cancelled_caught
    assert loop.time() - started < 5, "the cancelled GET waited for its read timeout"
    await asyncio.wait_for(closed.wait(), 5)
    assert target == bytearray(b"ab\0\0\0\0\0\0")


async def test_an_idle_connection_with_unasked_bytes_is_not_reused(
    serve: Callable[[Script], Awaitable[Server]],
) -> None:
    state: Server

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, state)
        writer.write(ok_206(b"abcd", 0, 8))
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"JUNK")  # after the body: the next answer would start with it
        await writer.drain()
        await read_request(reader, state)

    state = await serve(script)
    c = client()
    for _ in range(2):
        target = bytearray(4)
        head, _ = await c.get_into(state.url, [], memoryview(target))
        assert (head.status, target) == (206, bytearray(b"abcd"))
        await asyncio.sleep(0.1)
    assert state.connections == 2
