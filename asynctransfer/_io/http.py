"""Plain HTTP(S) sources through aiohttp: the first request of a URL download (redirects, TLS,
proxies, user headers), a whole body when a server ignores Range, and ranges when a proxy is
set. Ranges otherwise go through ``rangeget`` (no copy in Python).
"""

from __future__ import annotations

import contextlib
import ssl
import urllib.parse
from typing import TYPE_CHECKING, Any

import aiohttp

from .._errors import (
    AccessDeniedError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    PreconditionFailedError,
    ProtocolViolationError,
    RemoteError,
    ServerError,
    SlowDownError,
    TransferError,
    TransferTimeoutError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from .._options import TransferConfig

MAX_REDIRECTS = 10
# Headers that identify the user to the origin they were given for; not sent to another one
# that a redirect leads to (curl and browsers do the same).
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def redact(url: str) -> str:
    """``url`` without the password of its userinfo, for messages and results."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def http_error(url: str, status: int, reason: str | None) -> TransferError:
    """The typed error for an HTTP error status."""
    text = f"{url}: HTTP {status} {reason or ''}".rstrip()
    kwargs: dict[str, Any] = {"url": url, "status": status, "code": str(status)}
    if status == 404 or status == 410:
        return NotFoundError(text, **kwargs)
    if status in (401, 403):
        return AccessDeniedError(
            f"{text}: the server refused access; pass credentials with --header "
            "'Authorization: ...' (headers= in the API) if it needs them",
            **kwargs,
        )
    if status == 412:
        return PreconditionFailedError(text, **kwargs)
    if status in (429, 503):
        return SlowDownError(text, **kwargs)
    if status >= 500:
        return ServerError(text, **kwargs)
    return RemoteError(text, **kwargs)


@contextlib.contextmanager
def map_errors(url: str) -> Iterator[None]:
    """Convert aiohttp's exceptions raised inside into this library's tree."""
    try:
        yield
    except TransferError:
        raise
    except aiohttp.TooManyRedirects as exc:
        raise ProtocolViolationError(
            f"{url}: more than {MAX_REDIRECTS} redirects (a redirect loop?)", url=url
        ) from exc
    except aiohttp.InvalidURL as exc:
        raise InvalidRequestError(f"{url}: invalid URL: {exc}", url=url) from exc
    except aiohttp.ClientConnectorCertificateError as exc:
        error = NetworkError(
            f"{url}: TLS certificate not trusted: {exc.certificate_error}; set SSL_CERT_FILE to "
            "a CA bundle that has it",
            url=url,
        )
        error.retryable = False
        raise error from exc
    except aiohttp.ClientConnectorDNSError as exc:
        error = NetworkError(f"{url}: cannot resolve host {exc.host!r}: {exc.os_error}", url=url)
        error.retryable = False  # a name that does not resolve stays so
        raise error from exc
    except aiohttp.ClientConnectorError as exc:
        raise NetworkError(
            f"{url}: cannot connect to {exc.host}:{exc.port}: {exc}", url=url
        ) from exc
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
        raise TransferTimeoutError(f"{url}: timed out: {exc}", url=url) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        raise NetworkError(f"{url}: connection broke: {exc}", url=url) from exc
    except aiohttp.ClientResponseError as exc:
        raise http_error(url, exc.status, exc.message) from exc
    except aiohttp.ClientError as exc:
        raise NetworkError(f"{url}: {exc}", url=url) from exc


class HttpDriver:
    """One aiohttp session for URL downloads, created on first use."""

    def __init__(self, config: TransferConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The trust for URLs: the system's CAs (SSL_CERT_FILE / SSL_CERT_DIR when set), not
        AWS_CA_BUNDLE, which is for the S3 endpoint."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=self._config.max_concurrency + 2,
                ssl=self.ssl_context,  # verification on
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=True,  # HTTP(S)_PROXY, NO_PROXY, .netrc, SSL_CERT_FILE
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self._config.connect_timeout,
                    sock_read=self._config.read_timeout,
                ),
            )
        return self._session

    @contextlib.asynccontextmanager
    async def get(
        self, url: str, headers: dict[str, str], *, redirects: bool
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET ``url``; the response is open inside the block, errors already typed."""
        with map_errors(redact(url)):
            async with self.session().get(
                url,
                headers={**headers, "Accept-Encoding": "identity"},
                allow_redirects=redirects,
                max_redirects=MAX_REDIRECTS,
            ) as response:
                yield response

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def read_into(response: aiohttp.ClientResponse, view: memoryview, url: str) -> int:
    """Read the body into ``view``; returns the bytes read. More than fits is a protocol error;
    a break mid-body raises NetworkError with ``received`` set."""
    filled = 0
    try:
        with map_errors(url):
            while True:
                # readchunk, not readany: readany joins buffered chunks into a new bytes first.
                chunk, end_of_http_chunk = await response.content.readchunk()
                if not chunk:
                    if end_of_http_chunk:
                        continue
                    return filled
                end = filled + len(chunk)
                if end > len(view):
                    raise ProtocolViolationError(
                        f"{url}: the body is longer than the {len(view)} bytes asked for", url=url
                    )
                view[filled:end] = chunk
                filled = end
    except NetworkError as exc:
        exc.received = filled
        raise
