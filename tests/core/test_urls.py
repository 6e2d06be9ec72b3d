"""Transfer addresses: ``s3://bucket/key`` parsing and scheme detection."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynctransfer._core.urls import AddressError, S3Address, parse_s3_url, scheme_of

FAST = settings(max_examples=75, deadline=None)


# ------------------------------------------------------------------ scheme_of


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("s3://bucket/key", "s3"),
        ("S3://bucket/key", "s3"),
        ("https://example.com/x", "https"),
        ("HTTP://example.com/x", "http"),
        ("file:///tmp/x", "file"),
        ("git+ssh://host/repo", "git+ssh"),
        ("a.b-c+d://x", "a.b-c+d"),
        ("/tmp/data.bin", None),
        ("data.bin", None),
        ("./s3://not-a-scheme", None),
        ("relative/dir/file", None),
        ("C:\\Users\\data.bin", None),
        ("C:/Users/data.bin", None),
        ("s3:/bucket/key", None),
        ("s3:bucket/key", None),
        ("3s://bucket/key", None),
        ("://bucket/key", None),
        ("", None),
    ],
)
def test_scheme_of(address: str, expected: str | None) -> None:
    assert scheme_of(address) == expected


# ------------------------------------------------------------------ parse_s3_url: valid


@pytest.mark.parametrize(
    ("url", "bucket", "key"),
    [
        ("s3://my-bucket/key", "my-bucket", "key"),
        ("s3://abc/k", "abc", "k"),
        ("s3://b" + "x" * 61 + "z/k", "b" + "x" * 61 + "z", "k"),  # 63 characters
        ("s3://my.bucket.name/a/b/c.txt", "my.bucket.name", "a/b/c.txt"),
        ("s3://my_bucket/key", "my_bucket", "key"),
        ("s3://123bucket456/key", "123bucket456", "key"),
        ("s3://bucket/dir/", "bucket", "dir/"),
        ("s3://bucket//leading-slash", "bucket", "/leading-slash"),
        ("s3://bucket/with space?and#chars=%20", "bucket", "with space?and#chars=%20"),
        ("s3://bucket/ünïcödé/ключ", "bucket", "ünïcödé/ключ"),
        ("S3://bucket/key", "bucket", "key"),
    ],
)
def test_parse_s3_url_valid(url: str, bucket: str, key: str) -> None:
    address = parse_s3_url(url)
    assert address == S3Address(bucket=bucket, key=key)


def test_s3_address_str() -> None:
    assert str(S3Address("bucket", "a/b")) == "s3://bucket/a/b"


# ------------------------------------------------------------------ parse_s3_url: invalid


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("s3://", "no bucket", id="empty"),
        pytest.param("s3:///key", "no bucket", id="no-bucket"),
        pytest.param("s3://bucket", "no key", id="no-slash"),
        pytest.param("s3://bucket/", "no key", id="empty-key"),
        pytest.param("s3://ab/key", "not a valid bucket", id="too-short"),
        pytest.param("s3://" + "a" * 64 + "/key", "not a valid bucket", id="too-long"),
        pytest.param("s3://-bucket/key", "not a valid bucket", id="leading-dash"),
        pytest.param("s3://bucket-/key", "not a valid bucket", id="trailing-dash"),
        pytest.param("s3://.bucket/key", "not a valid bucket", id="leading-dot"),
        pytest.param("s3://bucket./key", "not a valid bucket", id="trailing-dot"),
        pytest.param("s3://buc ket/key", "not a valid bucket", id="space"),
        pytest.param("s3://buck@et/key", "not a valid bucket", id="at-sign"),
        pytest.param("s3://bucket:9000/key", "not a valid bucket", id="port"),
        pytest.param("s3://bücket/key", "not a valid bucket", id="non-ascii"),
        pytest.param("https://bucket/key", "not an s3:// URL", id="https"),
        pytest.param("gs://bucket/key", "not an s3:// URL", id="gs"),
        pytest.param("s3a://bucket/key", "not an s3:// URL", id="s3a"),
        pytest.param("bucket/key", "not an s3:// URL", id="no-scheme"),
        pytest.param("/tmp/file", "not an s3:// URL", id="local-path"),
        pytest.param("s3:/bucket/key", "not an s3:// URL", id="one-slash"),
        pytest.param("", "not an s3:// URL", id="empty-string"),
    ],
)
def test_parse_s3_url_invalid(url: str, message: str) -> None:
    with pytest.raises(AddressError, match=message) as info:
        parse_s3_url(url)
    assert repr(url) in str(info.value)


@pytest.mark.parametrize(
    "bucket",
    [
        pytest.param("\u212abucket", id="kelvin-sign"),
        pytest.param("buc\u017fket", id="long-s"),
        pytest.param("bucket\u0131", id="dotless-i"),
        pytest.param("\u0130bucket", id="dotted-capital-i"),
    ],
)
def test_non_ascii_bucket_names_are_refused(bucket: str) -> None:
    with pytest.raises(AddressError, match="not a valid bucket"):
        parse_s3_url(f"s3://{bucket}/key")


def test_address_error_is_a_value_error() -> None:
    assert issubclass(AddressError, ValueError)


# ------------------------------------------------------------------ properties

# Written independently of the module's regex: 3-63 characters, letters, digits, '.', '-', '_',
# beginning and ending with a letter or digit.
buckets = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]", fullmatch=True)
keys = st.text(min_size=1, max_size=200)


@FAST
@given(bucket=buckets, key=keys)
def test_parse_s3_url_round_trip(bucket: str, key: str) -> None:
    url = f"s3://{bucket}/{key}"
    address = parse_s3_url(url)
    assert address == S3Address(bucket, key)
    assert str(address) == url
    assert parse_s3_url(str(address)) == address
    assert scheme_of(url) == "s3"


@FAST
@given(
    bucket=st.text(
        alphabet=st.characters(codec="ascii", exclude_characters="/"), min_size=1, max_size=70
    ),
    key=keys,
)
def test_parse_s3_url_bucket_rule(bucket: str, key: str) -> None:
    url = f"s3://{bucket}/{key}"
    alnum = string.ascii_letters + string.digits
    valid = (
        3 <= len(bucket) <= 63
        and bucket[0] in alnum
        and bucket[-1] in alnum
        and all(c in alnum or c in "._-" for c in bucket)
    )
    if valid:
        assert parse_s3_url(url).bucket == bucket
    else:
        with pytest.raises(AddressError):
            parse_s3_url(url)
