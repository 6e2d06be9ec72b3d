"""AWS Signature Version 4, checked the way S3 checks it (header and presigned-URL forms).

The canonical request follows the AWS documentation: S3 signs the path as sent (no
normalisation, no double encoding), the sorted and encoded query without ``X-Amz-Signature``,
the signed headers (trimmed, inner spaces collapsed), and the payload hash
(``x-amz-content-sha256``: a hex SHA-256 the body must then match, or ``UNSIGNED-PAYLOAD``).
Streaming (aws-chunked) payloads are refused before this module is asked. Signatures are
compared with ``hmac.compare_digest``; the clock may be off by 15 minutes at most.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import urllib.parse
from calendar import timegm
from dataclasses import dataclass
from time import strptime
from typing import TYPE_CHECKING

from ._s3_xml import S3Error

if TYPE_CHECKING:
    from collections.abc import Mapping

    from multidict import CIMultiDictProxy

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW = 15 * 60
MAX_EXPIRES = 7 * 24 * 3600
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,\s*"
    r"Signature=([0-9a-f]{64})\s*"
)


@dataclass(frozen=True)
class Verified:
    access_key: str
    payload_sha256: str | None
    """The hex SHA-256 the body must have, or None for an unsigned payload."""


def _denied(message: str) -> S3Error:
    return S3Error("AccessDenied", message)


def _encode(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, percent-decoded ('+' stays '+', as S3 reads it)."""
    pairs = []
    for item in raw_query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((urllib.parse.unquote(name), urllib.parse.unquote(value)))
    return pairs


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    encoded = sorted((_encode(k), _encode(v)) for k, v in pairs if k != "X-Amz-Signature")
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_headers(headers: CIMultiDictProxy[str], signed: list[str]) -> str:
    lines = []
    for name in signed:
        values = headers.getall(name, None)
        if values is None:
            raise S3Error(
                "SignatureDoesNotMatch", f"the signed header {name!r} is not in the request"
            )
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "".join(lines)


@functools.lru_cache(maxsize=64)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    # (cached: four HMACs per request otherwise, for a key that changes once a day)
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _parse_time(amz_date: str) -> float:
    try:
        return float(timegm(strptime(amz_date, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        raise _denied(f"X-Amz-Date {amz_date!r} is not of the form 20240101T000000Z") from None


def verify(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: CIMultiDictProxy[str],
    credentials: Mapping[str, str],
    now: float,
) -> Verified:
    """Check the request's SigV4 signature; raise S3Error (403 mostly) when it does not hold."""
    pairs = query_pairs(raw_query)
    query = dict(pairs)
    authorization = headers.get("Authorization")
    if "X-Amz-Signature" in query:
        if query.get("X-Amz-Algorithm") != ALGORITHM:
            raise _denied("only AWS4-HMAC-SHA256 query authentication is supported")
        credential = query.get("X-Amz-Credential", "")
        signed = query.get("X-Amz-SignedHeaders", "")
        signature = query["X-Amz-Signature"]
        amz_date = query.get("X-Amz-Date", "")
        payload = headers.get("x-amz-content-sha256") or query.get("X-Amz-Content-Sha256", UNSIGNED)
        signed_at = _parse_time(amz_date)
        try:
            expires = int(query.get("X-Amz-Expires", ""))
        except ValueError:
            raise _denied("X-Amz-Expires must be a number of seconds") from None
        if not 0 <= expires <= MAX_EXPIRES:
            raise _denied(f"X-Amz-Expires must be between 0 and {MAX_EXPIRES} seconds")
        if now > signed_at + expires:
            raise _denied("Request has expired")
        if signed_at > now + MAX_SKEW:
            raise S3Error(
                "RequestTimeTooSkewed",
                "The difference between the request time and the server's time is too large.",
            )
    elif authorization is not None:
        match = _AUTH.fullmatch(authorization.strip())
        if match is None:
            raise _denied(
                "The authorization mechanism you have provided is not supported. Please use "
                "AWS4-HMAC-SHA256."
            )
        credential, signed, signature = match.groups()
        amz_date = headers.get("x-amz-date", "")
        payload = headers.get("x-amz-content-sha256", "")
        if not payload:
            raise S3Error(
                "InvalidRequest",
                "Missing required header for this request: x-amz-content-sha256",
            )
        signed_at = _parse_time(amz_date)
        if abs(now - signed_at) > MAX_SKEW:
            raise S3Error(
                "RequestTimeTooSkewed",
                "The difference between the request time and the server's time is too large.",
            )
    else:
        raise _denied("Access Denied")

    if payload != UNSIGNED and not _HEX64.fullmatch(payload):
        raise S3Error(
            "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a SHA-256 in hex"
        )
    scope = credential.split("/")
    if len(scope) != 5 or scope[3] != "s3" or scope[4] != "aws4_request":
        raise _denied(f"malformed credential scope {credential!r}")
    access_key, date, region, service, _ = scope
    secret = credentials.get(access_key)
    if secret is None:
        raise S3Error(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            AWSAccessKeyId=access_key,
        )
    if date != amz_date[:8]:
        raise _denied("the credential scope's date is not the request's date")
    signed_names = signed.split(";")
    if "host" not in signed_names:
        raise _denied("the Host header must be signed")
    canonical_headers = _canonical_headers(headers, signed_names)
    canonical_query = _canonical_query(pairs)
    key = _signing_key(secret, date, region, service)
    # The path as sent; if that fails, the path as AWS's rules would encode it, for clients that
    # send characters raw that they sign encoded.
    paths = [raw_path]
    canonical_path = urllib.parse.quote(urllib.parse.unquote(raw_path), safe="/~")
    if canonical_path != raw_path:
        paths.append(canonical_path)
    for path in paths:
        lines = (method, path, canonical_query, canonical_headers, signed, payload)
        canonical_request = "\n".join(lines)
        string_to_sign = "\n".join(
            [
                ALGORITHM,
                amz_date,
                f"{date}/{region}/{service}/aws4_request",
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            ]
        )
        expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, signature):
            return Verified(access_key, None if payload == UNSIGNED else payload)
    raise S3Error(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        AWSAccessKeyId=access_key,
        StringToSign=string_to_sign,
        CanonicalRequest=canonical_request,
    )
