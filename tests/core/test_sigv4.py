"""SigV4 signing checked against botocore's signer and against the local server's verifier."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from asynctransfer._core.sigv4 import Signer, canonical_query, quote_key
from asynctransfer.servers._s3_xml import S3Error
from asynctransfer.servers._sigv4 import verify

if TYPE_CHECKING:
    from collections.abc import Mapping

NOW = 1_700_000_000.75  # 2023-11-14T22:13:20Z
HOST = "127.0.0.1:9000"
KEYS = [
    "plain",
    "with space",
    "plus+sign",
    "tilde~x",
    "eq=sign&amp",
    "nested/dir/file.txt",
    "unicodé/日本語/😀",
    "percent%2Fliteral",
    "question?hash#",
    "//double//slash/",
    "./dots/../x",
]
HEADERS: Mapping[str, str] = {
    "x-amz-checksum-crc32c": "yZRlqg==",
    "Content-MD5": "1B2M2Y8AsgTpgAcHMTcHuA==",
    "Content-Type": "text/plain;  charset=utf-8",
    "X-Amz-Meta-Note": "  two  spaces  ",
    "If-None-Match": "*",  # not signed
}


def stamp(now: float) -> str:
    return datetime.datetime.fromtimestamp(int(now), datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def botocore_headers(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    token: str | None,
    now: float,
    region: str = "eu-west-1",
) -> dict[str, str]:
    """What botocore's S3 signer adds, at a fixed time: ``add_auth`` reads the clock itself,
    so its steps are called one by one, as it calls them, after setting the timestamp."""
    auth = S3SigV4Auth(Credentials("AKIDTEST", "secret/key+1", token), "s3", region)
    request = AWSRequest(method, f"http://{HOST}{path}", headers=dict(headers), params=query)
    request.context["timestamp"] = stamp(now)
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    auth._inject_signature_to_request(request, signature)
    return {k.lower(): v for k, v in request.headers.items() if k.lower() not in _lower(headers)}


def _lower(headers: Mapping[str, str]) -> set[str]:
    return {name.lower() for name in headers}


def signer(token: str | None = None, region: str = "eu-west-1") -> Signer:
    return Signer("AKIDTEST", "secret/key+1", token, region=region)


def signed_by_botocore(headers: Mapping[str, str]) -> dict[str, str]:
    # botocore signs every header but a few; ours signs host, x-amz-*, content-md5/-type.
    return {k: v for k, v in headers.items() if k.lower() != "if-none-match"}


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("token", [None, "session/token=="])
@pytest.mark.parametrize("query", [{}, {"versionId": "v 1+2", "partNumber": "3", "a~b": ""}])
def test_same_headers_as_botocore(key: str, token: str | None, query: dict[str, str]) -> None:
    path = f"/bucket/{quote_key(key)}"
    ours = signer(token).sign("PUT", HOST, path, query, signed_by_botocore(HEADERS), NOW)
    assert ours == botocore_headers("PUT", path, query, signed_by_botocore(HEADERS), token, NOW)
    assert ("x-amz-security-token" in ours) == (token is not None)


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@given(
    key=_text,
    query=st.dictionaries(_text.filter(bool), _text, max_size=3),
    meta=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), _value, max_size=3
    ),
    method=st.sampled_from(["GET", "PUT", "HEAD", "DELETE"]),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_same_headers_as_botocore_for_any_request(
    key: str, query: dict[str, str], meta: dict[str, str], method: str, now: float
) -> None:
    headers = {f"x-amz-meta-{name}": value for name, value in meta.items()}
    path = f"/b/{quote_key(key)}"
    ours = signer("tok").sign(method, HOST, path, query, headers, now)
    assert ours == botocore_headers(method, path, query, headers, "tok", now)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("token", [None, "session-token"])
def test_the_local_servers_verifier_accepts_it(key: str, token: str | None) -> None:
    path = f"/bucket/{quote_key(key)}"
    query = {"versionId": "null", "x y": "1/2"}
    added = signer(token, region="us-east-1").sign("GET", HOST, path, query, HEADERS, NOW)
    sent = CIMultiDict({"Host": HOST, **HEADERS, **added})
    verified = verify(
        "GET",
        path,
        canonical_query(query),
        CIMultiDictProxy(sent),
        {"AKIDTEST": "secret/key+1"},
        NOW + 60,
    )
    assert (verified.access_key, verified.payload_sha256) == ("AKIDTEST", None)

    # A signed header changed on the way is caught; an unsigned one is not.
    for name, value in [("x-amz-checksum-crc32c", "AAAAAA=="), ("Host", "other:9000")]:
        tampered = CIMultiDict(sent)
        tampered[name] = value
        with pytest.raises(S3Error, match="signature"):
            verify(
                "GET",
                path,
                canonical_query(query),
                CIMultiDictProxy(tampered),
                {"AKIDTEST": "secret/key+1"},
                NOW,
            )
    unsigned = CIMultiDict(sent)
    unsigned["If-None-Match"] = '"etag"'
    credentials = {"AKIDTEST": "secret/key+1"}
    verify("GET", path, canonical_query(query), CIMultiDictProxy(unsigned), credentials, NOW)


def test_the_cached_signing_key_follows_the_date() -> None:
    s = signer()
    next_day = NOW + 86_400
    for now in (NOW, next_day, NOW, NOW + 1):
        assert s.sign("GET", HOST, "/b/k", {}, {}, now) == botocore_headers(
            "GET", "/b/k", {}, {}, None, now
        )


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("a b", "a%20b"),
        ("a+b", "a%2Bb"),
        ("a~b-c_d.e", "a~b-c_d.e"),
        ("dir/sub/f", "dir/sub/f"),
        ("é", "%C3%A9"),
        ("k=v&x?y#z", "k%3Dv%26x%3Fy%23z"),
        ("100%", "100%25"),
    ],
)
def test_quote_key(key: str, path: str) -> None:
    assert quote_key(key) == path


def test_canonical_query_is_sorted_and_encoded() -> None:
    assert canonical_query({"b": "2", "a": "x y", "c~": "+/"}) == "a=x%20y&b=2&c~=%2B%2F"
    assert canonical_query([("k", "2"), ("k", "1")]) == "k=1&k=2"
    assert canonical_query({}) == ""


@pytest.mark.parametrize("name", ["X-Amz-Date", "authorization", "x-amz-security-token"])
def test_headers_the_signer_sets_cannot_be_given(name: str) -> None:
    with pytest.raises(ValueError, match="signer"):
        signer().sign("GET", HOST, "/b/k", {}, {name: "x"}, NOW)


def test_repr_shows_no_secret() -> None:
    assert "secret" not in repr(signer("token"))
