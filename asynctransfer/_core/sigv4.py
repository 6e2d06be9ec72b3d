"""AWS Signature Version 4 for S3 requests whose payload is not signed (UNSIGNED-PAYLOAD).

Why by hand: the lean small-object client (``_io/s3lean.py``) signs every PutObject and
GetObject itself. botocore's signer works on an ``AWSRequest`` (header maps, ``urlsplit``, four
HMACs to derive the key each time): ~0.15 ms per request measured here, most of that client's
whole budget. This one derives the key once a day and costs ~0.01 ms: one SHA-256, one HMAC.
The payload is never hashed, as the engine's botocore client is configured too
(``payload_signing_enabled=False``): the signed checksum header (CRC32C, Content-MD5) is what
the store verifies the body against.

What it signs, as S3 checks it (see ``servers/_sigv4.py``, the server side): the path as sent
(S3 does not normalise or double-encode it), the query sorted and encoded, and the headers
``host``, ``x-amz-*``, ``content-md5`` and ``content-type`` (values trimmed, inner whitespace
collapsed). Other headers (``If-None-Match``, ``Content-Length``...) go unsigned, which SigV4
allows.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_SIGNED_PLAIN = frozenset({"content-md5", "content-type"})
# Set by ``sign`` itself: a caller's copy would contradict what is sent.
_OURS = frozenset({"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"})


def quote_key(key: str) -> str:
    """An object key as an S3 URL path: UTF-8, every byte but unreserved ones and '/' encoded
    (what botocore sends, so the same key names the same object)."""
    return urllib.parse.quote(key, safe="/")


def canonical_query(query: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The query string, names and values encoded and sorted: send it as it is, since S3 signs
    the canonical form and this makes what is sent and what is signed the same."""
    items = query.items() if isinstance(query, Mapping) else query
    pairs = sorted(
        (urllib.parse.quote(k, safe=""), urllib.parse.quote(v, safe="")) for k, v in items
    )
    return "&".join(f"{k}={v}" for k, v in pairs)


class Signer:
    """Signs S3 requests with one set of credentials in one region."""

    __slots__ = (
        "_access_key",
        "_key",
        "_key_date",
        "_region",
        "_second",
        "_secret",
        "_stamp",
        "_token",
    )

    def __init__(
        self, access_key: str, secret_key: str, session_token: str | None = None, *, region: str
    ) -> None:
        self._access_key = access_key
        self._secret = secret_key
        self._token = session_token
        self._region = region
        self._key_date = ""
        self._key = b""
        self._second = -1
        self._stamp = ""

    @property
    def access_key(self) -> str:
        return self._access_key

    @property
    def region(self) -> str:
        return self._region

    @property
    def session_token(self) -> str | None:
        return self._token

    def __repr__(self) -> str:
        return f"Signer(access_key={self._access_key!r}, region={self._region!r})"

    def _signing_key(self, date: str) -> bytes:
        # Derived from the secret and the day: four HMACs, then the same key all day long.
        if date != self._key_date:
            key = hmac.digest(f"AWS4{self._secret}".encode(), date.encode(), "sha256")
            for part in (self._region, "s3", "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            self._key, self._key_date = key, date
        return self._key

    def _amz_date(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self._stamp, self._second = moment.strftime("%Y%m%dT%H%M%SZ"), second
        return self._stamp

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: Mapping[str, str] | Iterable[tuple[str, str]] | str,
        headers: Mapping[str, str],
        now: float,
    ) -> dict[str, str]:
        """The headers to add to the request: ``x-amz-date``, ``x-amz-content-sha256``,
        ``x-amz-security-token`` (with a session token) and ``authorization``.

        ``host``: the Host header as sent (port included unless the scheme's default).
        ``path``: the percent-encoded path as sent (see ``quote_key``). ``query``: pairs, or a
        string already in canonical form (``canonical_query``). ``headers``: the other
        headers to send. ``now``: POSIX seconds.
        """
        stamp = self._amz_date(now)
        date = stamp[:8]
        added = {"x-amz-date": stamp, "x-amz-content-sha256": UNSIGNED_PAYLOAD}
        if self._token:
            added["x-amz-security-token"] = self._token
        signed = {"host": host}
        for name, value in headers.items():
            lower = name.lower()
            if lower in _OURS:
                raise ValueError(f"the {name} header is the signer's to set")
            if lower.startswith("x-amz-") or lower in _SIGNED_PLAIN:
                if lower in signed:
                    raise ValueError(f"the {name} header is given twice")
                signed[lower] = " ".join(value.split())
        signed.update(added)
        names = sorted(signed)
        signed_names = ";".join(names)
        query_text = query if isinstance(query, str) else canonical_query(query)
        canonical = "\n".join(
            (
                method,
                path,
                query_text,
                "".join(f"{name}:{signed[name]}\n" for name in names),
                signed_names,
                UNSIGNED_PAYLOAD,
            )
        )
        scope = f"{date}/{self._region}/s3/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.digest(self._signing_key(date), to_sign.encode(), "sha256").hex()
        added["authorization"] = (
            f"{ALGORITHM} Credential={self._access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return added
