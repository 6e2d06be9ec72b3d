"""The lean small-object client against real servers: the local S3 endpoint (in a thread, with
and without credentials), moto, and scripted TCP servers for broken answers. aiobotocore is the
independent client that checks what was stored."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import os
import random
import socket
import ssl
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import crc32c
import pytest
from aiobotocore.credentials import AioRefreshableCredentials
from aiobotocore.session import get_session
from aiohttp import web
from botocore.credentials import CredentialProvider

from asynctransfer import (
    AccessDeniedError,
    NetworkError,
    NotFoundError,
    PreconditionFailedError,
    ProtocolViolationError,
    TransferConfig,
    TransferTimeoutError,
)
from asynctransfer._core.sigv4 import Signer
from asynctransfer._io.s3lean import LeanS3, TooLargeForLean
from asynctransfer.servers.s3 import create_app

from ..servers.conftest import threaded_s3

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from asynctransfer.testing import MotoServer

KEYS = [
    "plain",
    "with space",
    "plus+sign",
    "tilde~x",
    "eq=sign&amp",
    "nested/dir/deeper/file.txt",
    "unicodé/日本語/😀",
    "question?mark#hash",
    "semi;colon,comma'quote",
]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    # uvloop, as the CLI and the benchmarks run it; the engine's tests (tests/engine/
    # test_batch.py) drive this client on the plain asyncio loop.
    return ("asyncio", {"debug": True, "use_uvloop": True})


@pytest.fixture(scope="module")
def local_url(tmp_path_factory: pytest.TempPathFactory, _aws_environment: None) -> Iterator[str]:
    with threaded_s3(tmp_path_factory.mktemp("lean")) as url:
        yield url


@dataclass
class Store:
    name: str
    endpoint_url: str
    bucket: str
    client: Any
    """aiobotocore, to check what the lean client did."""

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def connections(self, requests: int, concurrency: int = 1) -> int:
        """How many connections so many requests need at most: moto's server (werkzeug)
        answers every request with Connection: close; ours keeps them alive."""
        return requests if self.name == "moto" else concurrency

    async def read(self, key: str) -> bytes:
        r = await self.client.get_object(Bucket=self.bucket, Key=key)
        async with r["Body"] as body:
            data: bytes = await body.read()
        return data


@contextlib.asynccontextmanager
async def botocore_client(endpoint_url: str, **kw: Any) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "s3", endpoint_url=endpoint_url, region_name="us-east-1", **kw
    ) as client:
        yield client


@pytest.fixture(params=["local", "moto"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "local":
        endpoint: str = request.getfixturevalue("local_url")
    else:
        server: MotoServer = request.getfixturevalue("moto")
        endpoint = server.endpoint_url
    async with botocore_client(endpoint) as client:
        bucket = f"lean-{uuid.uuid4().hex[:12]}"
        await client.create_bucket(Bucket=bucket)
        yield Store(request.param, endpoint, bucket, client)


_opened: list[LeanS3] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _opened:
        await _opened.pop().aclose()


def lean(
    endpoint_url: str,
    *,
    key: str = "testing",
    secret: str = "testing",
    max_idle: int = 8,
    read_timeout: float = 10.0,
) -> LeanS3:
    client = LeanS3(
        endpoint_url,
        Signer(key, secret, region="us-east-1"),
        path_style=True,
        max_idle=max_idle,
        connect_timeout=5.0,
        read_timeout=read_timeout,
    )
    _opened.append(client)
    return client


def crc(data: bytes) -> str:
    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()


async def test_round_trips_keep_keys_bytes_and_checksums(store: Store) -> None:
    client = lean(store.endpoint_url)
    stored = {}
    for i, key in enumerate(KEYS):
        data = random.Random(i).randbytes(i * 1000)
        put = await client.put_object(
            store.bucket, key, data, {"x-amz-checksum-crc32c": crc(data)}, store.url(key)
        )
        if store.name == "local":  # moto takes the checksum but does not echo it
            assert put.checksums == {"CRC32C": crc(data)}
        stored[key] = (data, put.etag)
    listed = await store.client.list_objects_v2(Bucket=store.bucket)
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(KEYS)
    for key, (data, etag) in stored.items():
        info, body = await client.get_object(store.bucket, key, store.url(key), max_size=1 << 20)
        assert body == data == await store.read(key)
        assert (info.size, info.etag) == (len(data), etag)
        # What botocore reads in the same answer, field for field.
        r = await store.client.get_object(Bucket=store.bucket, Key=key, ChecksumMode="ENABLED")
        r["Body"].close()
        assert info.version_id == r.get("VersionId")
        assert info.checksum_type == r.get("ChecksumType")
        assert info.checksums == {
            name[len("Checksum") :]: value
            for name, value in r.items()
            if name.startswith("Checksum") and name != "ChecksumType"
        }
        if store.name == "local":
            assert info.checksums == {"CRC32C": crc(data)}
    assert client.statistics().connections_opened == store.connections(len(KEYS) * 2)


async def test_bytearray_and_memoryview_bodies(store: Store) -> None:
    client = lean(store.endpoint_url)
    data = os.urandom(70_000)
    await client.put_object(store.bucket, "ba", bytearray(data), {}, store.url("ba"))
    await client.put_object(store.bucket, "mv", memoryview(data)[10:], {}, store.url("mv"))
    await client.put_object(store.bucket, "empty", b"", {}, store.url("empty"))
    assert await store.read("ba") == data
    assert await store.read("mv") == data[10:]
    assert (await client.get_object(store.bucket, "empty", "u", max_size=0))[1] == b""


async def test_a_missing_key_is_not_found(store: Store) -> None:
    url = store.url("missing")
    with pytest.raises(NotFoundError) as info:
        await lean(store.endpoint_url).get_object(store.bucket, "missing", url, max_size=100)
    assert url in str(info.value)
    assert (info.value.url, info.value.status, info.value.code) == (url, 404, "NoSuchKey")
    with pytest.raises(NotFoundError, match="NoSuchBucket"):
        await lean(store.endpoint_url).put_object("no-such-bucket-x", "k", b"x", {}, url)


async def test_if_none_match_on_an_existing_key_fails(store: Store) -> None:
    client = lean(store.endpoint_url)
    await client.put_object(store.bucket, "k", b"one", {}, store.url("k"))
    with pytest.raises(PreconditionFailedError) as info:
        await client.put_object(store.bucket, "k", b"two", {"If-None-Match": "*"}, store.url("k"))
    assert store.url("k") in str(info.value)
    assert await store.read("k") == b"one"
    # After a refused PUT the server may not have read the body: that connection is not reused.
    assert client.statistics().idle == 0
    await client.put_object(store.bucket, "new", b"x", {"If-None-Match": "*"}, store.url("new"))


async def test_if_match_pins_the_version_read(store: Store) -> None:
    client = lean(store.endpoint_url)
    put = await client.put_object(store.bucket, "k", b"one", {}, store.url("k"))
    info, _ = await client.get_object(store.bucket, "k", "u", if_match=put.etag, max_size=10)
    assert info.etag == put.etag
    with pytest.raises(PreconditionFailedError):
        await client.get_object(store.bucket, "k", "u", if_match='"0123"', max_size=10)


async def test_a_larger_object_is_refused_unread(store: Store) -> None:
    client = lean(store.endpoint_url)
    data = os.urandom(1 << 20)
    await client.put_object(store.bucket, "big", data, {}, store.url("big"))
    with pytest.raises(TooLargeForLean) as info:
        await client.get_object(store.bucket, "big", store.url("big"), max_size=(1 << 20) - 1)
    assert info.value.size == 1 << 20
    assert client.statistics().idle == 0  # the unread body went with its connection
    assert (await client.get_object(store.bucket, "big", "u", max_size=1 << 20))[1] == data


async def test_concurrent_requests_are_byte_exact_on_reused_connections(store: Store) -> None:
    client = lean(store.endpoint_url, max_idle=32)
    rng = random.Random(7)
    objects = {f"c/{i:03}": rng.randbytes(rng.randrange(0, 100_000)) for i in range(200)}
    limit = anyio.CapacityLimiter(32)

    async def put(key: str) -> None:
        async with limit:
            await client.put_object(store.bucket, key, objects[key], {}, store.url(key))

    got: dict[str, bytes] = {}

    async def get(key: str) -> None:
        async with limit:
            got[key] = (await client.get_object(store.bucket, key, "u", max_size=1 << 20))[1]

    for step in (put, get):
        async with anyio.create_task_group() as tg:
            for key in objects:
                tg.start_soon(step, key)
    assert got == objects
    stats = client.statistics()
    assert stats.requests == 400
    assert stats.connections_opened <= store.connections(400, concurrency=32)
    assert stats.idle <= 32


async def test_wrong_credentials_are_denied(tmp_path: Path) -> None:
    with threaded_s3(tmp_path, credentials={"AKIDLEAN": "right-secret"}) as url:
        async with botocore_client(
            url, aws_access_key_id="AKIDLEAN", aws_secret_access_key="right-secret"
        ) as c:
            await c.create_bucket(Bucket="bkt")
        right = lean(url, key="AKIDLEAN", secret="right-secret")
        await right.put_object("bkt", "k e y+~", b"data", {"Content-MD5": md5(b"data")}, "s3://k")
        assert (await right.get_object("bkt", "k e y+~", "s3://k", max_size=10))[1] == b"data"
        for key, secret, code in [
            ("AKIDLEAN", "wrong-secret", "SignatureDoesNotMatch"),
            ("AKIDOTHER", "right-secret", "InvalidAccessKeyId"),
        ]:
            with pytest.raises(AccessDeniedError) as info:
                await lean(url, key=key, secret=secret).get_object("bkt", "k", "s3://k", max_size=9)
            assert (info.value.status, info.value.code) == (403, code)
            assert "s3://k" in str(info.value)
            with pytest.raises(AccessDeniedError):
                await lean(url, key=key, secret=secret).put_object("bkt", "k", b"x", {}, "s3://k")


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def test_the_pool_recovers_when_the_server_closes_idle_connections(tmp_path: Path) -> None:
    (tmp_path / "bkt").mkdir()
    runner = web.AppRunner(create_app(tmp_path), keepalive_timeout=0.2, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        client = lean(f"http://127.0.0.1:{runner.addresses[0][1]}")
        for round_ in range(3):
            for i in range(3):
                await client.put_object("bkt", f"k{i}", b"x" * i, {}, "s3://bkt/k")
                await client.get_object("bkt", f"k{i}", "s3://bkt/k", max_size=10)
            assert client.statistics().connections_opened == round_ + 1
            await anyio.sleep(0.6)  # the server closes the idle connection meanwhile
    finally:
        await runner.cleanup()


# -- scripted servers: answers no S3 store gives, byte for byte

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


OK_HEAD = b'HTTP/1.1 200 OK\r\nETag: "e"\r\n'


def answering(*responses: bytes, linger: float = 0.05) -> Script:
    """A script that answers each request in turn with the next response, then lingers."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if b"Content-Length" in line
                ),
                0,
            )
            await reader.readexactly(length)
            writer.write(response)
            await writer.drain()
        await asyncio.sleep(linger)

    return script


@pytest.mark.parametrize(
    ("response", "error", "match"),
    [
        (OK_HEAD + b"Content-Length: 4\r\n\r\nabcdEXTRA", ProtocolViolationError, "more bytes"),
        (OK_HEAD + b"Content-Length: 8\r\n\r\nabcd", NetworkError, "after 4 of 8 body bytes"),
        (OK_HEAD + b"Content-Le", NetworkError, "head"),
        (b"", NetworkError, "before answering"),
        (b"HTTP/9 200 X\r\n\r\n", ProtocolViolationError, "status line"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000, ProtocolViolationError, "larger"),
        (OK_HEAD + b"\r\nno length", ProtocolViolationError, "Content-Length"),
        (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", ProtocolViolationError, "chunk"),
        (
            b"HTTP/1.1 206 Partial\r\nContent-Length: 1\r\nETag: x\r\n\r\na",
            ProtocolViolationError,
            "206",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", ProtocolViolationError, "ETag"),
    ],
    ids=[
        "body-too-long",
        "body-cut",
        "head-cut",
        "closed",
        "bad-status-line",
        "endless-head",
        "no-length",
        "bad-chunk",
        "partial",
        "no-etag",
    ],
)
async def test_broken_answers_fail_clearly_and_name_the_url(
    scripted: Callable[[Script], Awaitable[str]],
    response: bytes,
    error: type[Exception],
    match: str,
) -> None:
    endpoint = await scripted(answering(response))
    with pytest.raises(error, match=match) as info:
        await lean(endpoint).get_object("b", "k", "s3://b/k", max_size=100)
    assert "s3://b/k" in str(info.value)


async def test_chunked_and_interim_answers_are_read(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    xml = b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>"
    endpoint = await scripted(
        answering(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            + OK_HEAD
            + b"Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(xml), xml),
            OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"10\r\n" + b"x" * 16 + b"\r\n",
        )
    )
    client = lean(endpoint)
    info, body = await client.get_object("b", "k", "u", max_size=5)
    assert (body, info.size, info.etag) == (b"abcde", 5, '"e"')
    with pytest.raises(NotFoundError, match="gone"):
        await client.get_object("b", "k", "u", max_size=5)
    with pytest.raises(TooLargeForLean):
        await client.get_object("b", "k", "u", max_size=5)
    assert client.statistics().connections_opened == 1


async def test_answers_in_small_pieces_are_reassembled(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    answers = [
        OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        OK_HEAD + b"Content-Length: 11\r\n\r\nhello again",
    ]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await reader.readuntil(b"\r\n\r\n")
            for i in range(0, len(answer), 3):
                writer.write(answer[i : i + 3])
                await writer.drain()
                await asyncio.sleep(0.002)

    client = lean(await scripted(script))
    assert (await client.get_object("b", "k", "u", max_size=20))[1] == b"hello world"
    assert (await client.get_object("b", "k", "u", max_size=20))[1] == b"hello again"
    assert client.statistics().connections_opened == 1


async def test_http_1_0_answers_are_not_kept_alive(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    answer = b'HTTP/1.0 200 OK\r\nETag: "e"\r\nContent-Length: 2\r\n\r\nok'
    endpoint = await scripted(answering(answer, linger=1))
    client = lean(endpoint)
    assert (await client.get_object("b", "k", "u", max_size=20))[1] == b"ok"
    assert client.statistics().idle == 0


async def test_a_stall_times_out(scripted: Callable[[Script], Awaitable[str]]) -> None:
    endpoint = await scripted(answering(OK_HEAD + b"Content-Length: 8\r\n\r\nab", linger=5))
    with pytest.raises(TransferTimeoutError, match=r"s3://b/k: no data for 0\.3 s"):
        await lean(endpoint, read_timeout=0.3).get_object("b", "k", "s3://b/k", max_size=100)


async def test_a_slow_but_steady_answer_is_not_a_stall(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK_HEAD + b"Content-Length: 6\r\n\r\n")
        for byte in b"abcdef":
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))

    endpoint = await scripted(script)
    _, body = await lean(endpoint, read_timeout=0.4).get_object("b", "k", "u", max_size=10)
    assert body == b"abcdef"


async def test_connection_refused_is_a_network_error() -> None:
    # Bound, not listening: connections are refused.
    with socket_bound() as port, pytest.raises(NetworkError, match=r"s3://b/k: cannot connect"):
        await lean(f"http://127.0.0.1:{port}").get_object("b", "k", "s3://b/k", max_size=1)


@contextlib.contextmanager
def socket_bound() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        yield port


async def test_cancellation_closes_the_connection(
    scripted: Callable[[Script], Awaitable[str]],
) -> None:
    closed = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK_HEAD + b"Content-Length: 8\r\n\r\nab")
        await reader.read()  # until the client goes away
        closed.set()

    endpoint = await scripted(script)
    client = lean(endpoint)
    with anyio.move_on_after(0.2) as scope:
        await client.get_object("b", "k", "u", max_size=10)
    assert scope.cancelled_caught
    with anyio.fail_after(5):
        await closed.wait()
    assert client.statistics().idle == 0


# -- TLS, and clients made from aiobotocore's


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for "localhost", made here."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    pem = serialization.Encoding.PEM
    paths[0].write_bytes(cert("test CA", ca_key, "test CA", ca_key, True).public_bytes(pem))
    paths[1].write_bytes(cert("localhost", key, "test CA", ca_key, False).public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@contextlib.contextmanager
def threaded_https(root: Path, context: ssl.SSLContext) -> Iterator[int]:
    """The S3 app over TLS on its own loop in a thread (a refused handshake is an error of the
    server's loop, which must not be the test's); yields its port."""
    started = threading.Event()
    ports: list[int] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        runner = web.AppRunner(create_app(root), handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        ports.append(runner.addresses[0][1])
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield ports[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


async def test_https_verifies_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = tls_files(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    (tmp_path / "bkt").mkdir()
    with threaded_https(tmp_path, context) as port:
        endpoint = f"https://localhost:{port}"
        with pytest.raises(NetworkError, match="CERTIFICATE_VERIFY_FAILED"):
            await lean(endpoint).put_object("bkt", "k", b"x", {}, "s3://bkt/k")
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))  # botocore's variable, as botocore does
        client = lean(endpoint)
        for i in range(3):
            await client.put_object("bkt", "k", b"secret %d" % i, {}, "s3://bkt/k")
            assert (await client.get_object("bkt", "k", "u", max_size=10))[1] == b"secret %d" % i
        assert client.statistics().connections_opened == 1
        await client.aclose()


async def test_from_client_uses_its_endpoint_and_credentials(store: Store) -> None:
    config = TransferConfig(endpoint_url=store.endpoint_url)
    client = await LeanS3.from_client(store.client, config)
    assert client is not None
    _opened.append(client)
    await client.put_object(store.bucket, "a/b c", b"via from_client", {}, "u")
    assert await store.read("a/b c") == b"via from_client"


async def test_from_client_addresses_aws_by_virtual_host() -> None:
    async with get_session().create_client("s3", region_name="eu-west-1") as c:
        client = await LeanS3.from_client(c, TransferConfig())
    assert client is not None
    _opened.append(client)
    assert client._route("my-bucket", "a b") == (
        ("https", "my-bucket.s3.eu-west-1.amazonaws.com", 443),
        "my-bucket.s3.eu-west-1.amazonaws.com",
        "/a%20b",
    )
    # Dots would not match the certificate's wildcard: path style, as botocore does.
    assert client._route("my.bucket", "k")[1:] == ("s3.eu-west-1.amazonaws.com", "/my.bucket/k")


async def test_from_client_declines_what_it_cannot_address() -> None:
    from botocore import UNSIGNED
    from botocore.config import Config

    session = get_session()
    async with session.create_client("s3", config=Config(signature_version=UNSIGNED)) as c:
        assert await LeanS3.from_client(c, TransferConfig()) is None
    async with session.create_client("s3", region_name="cn-north-1") as c:
        assert await LeanS3.from_client(c, TransferConfig()) is None
    async with session.create_client(
        "s3", config=Config(s3={"use_accelerate_endpoint": True})
    ) as c:
        assert await LeanS3.from_client(c, TransferConfig()) is None


async def test_refreshed_credentials_are_picked_up(tmp_path: Path) -> None:
    current = {"access_key": "AKIDOLD", "secret_key": "old", "token": None}

    def fetch() -> dict[str, Any]:
        # Five minutes left: inside botocore's refresh window, so every read refreshes.
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        return {**current, "expiry_time": expiry.isoformat()}

    class Provider(CredentialProvider):  # type: ignore[misc]
        METHOD = "lean-test"

        async def load(self) -> Any:
            return AioRefreshableCredentials.create_from_metadata(
                fetch(), refresh_using=fetch, method=self.METHOD
            )

    session = get_session()
    session.get_component("credential_provider").insert_before("env", Provider())
    with threaded_s3(tmp_path, credentials={"AKIDNEW": "new"}) as url:
        async with botocore_client(
            url, aws_access_key_id="AKIDNEW", aws_secret_access_key="new"
        ) as c:
            await c.create_bucket(Bucket="bkt")
        async with session.create_client("s3", endpoint_url=url, region_name="us-east-1") as c:
            client = await LeanS3.from_client(c, TransferConfig(endpoint_url=url))
        assert client is not None
        _opened.append(client)
        with pytest.raises(AccessDeniedError, match="InvalidAccessKeyId"):
            await client.put_object("bkt", "k", b"1", {}, "u")
        current.update(access_key="AKIDNEW", secret_key="new")  # the provider renews the keys
        client._recheck_at = 0.0  # instead of waiting a minute
        await client.put_object("bkt", "k", b"2", {}, "u")
