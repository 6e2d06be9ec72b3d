"""Checkpoints: lossless JSON round trips, refusal of anything malformed or foreign, no
credential in what is stored, and the rules for keeping an interrupted upload's parts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynctransfer._core.checkpoint import (
    CheckpointError,
    DownloadCheckpoint,
    ListedPart,
    LocalSlice,
    PartRecord,
    Reconciliation,
    SourceIdentity,
    UploadCheckpoint,
    default_name,
    peek_upload,
    shown_source,
    source_digest,
)

FAST = settings(max_examples=60, deadline=None)
naturals = st.integers(min_value=0, max_value=2**63)
text = st.text(max_size=40)
records = st.builds(
    PartRecord, text, st.text(alphabet="0123456789abcdef", max_size=16), st.none() | text
)
uploads = st.builds(
    UploadCheckpoint,
    bucket=text,
    key=text,
    upload_id=text,
    source_path=text,
    source=st.builds(SourceIdentity, naturals, naturals, naturals, naturals),
    size=naturals,
    part_size=naturals,
    checksum_algorithm=st.sampled_from(["crc32c", "md5", "none"]),
    parts=st.dictionaries(st.integers(1, 10_000), records, max_size=20),
)
downloads = st.builds(
    DownloadCheckpoint,
    source=text,
    source_digest=text,
    dest=text,
    temp=text,
    size=naturals,
    part_size=naturals,
    validator=text,
    version_id=st.none() | text,
    ranges=st.dictionaries(st.integers(1, 10_000), text, max_size=20),
)


@FAST
@given(uploads)
def test_upload_checkpoint_round_trips(checkpoint: UploadCheckpoint) -> None:
    assert UploadCheckpoint.from_json(checkpoint.to_json()) == checkpoint


@FAST
@given(downloads)
def test_download_checkpoint_round_trips(checkpoint: DownloadCheckpoint) -> None:
    assert DownloadCheckpoint.from_json(checkpoint.to_json()) == checkpoint


def _upload() -> UploadCheckpoint:
    return UploadCheckpoint(
        "b",
        "k",
        "id-1",
        "/f",
        SourceIdentity(10, 1, 2, 3),
        10,
        5,
        "crc32c",
        {1: PartRecord('"e1"', "aa", "c1")},
    )


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda d: d[: len(d) // 2], "not JSON"),
        (lambda d: b"[]", "not a JSON object"),
        (lambda d: d.replace(b'"version": 1', b'"version": 99'), "version 99"),
        (lambda d: d.replace(b'"kind": "upload"', b'"kind": "download"'), "'download' checkpoint"),
        (lambda d: d.replace(b'"size": 10', b'"size": -1'), "malformed"),
        (lambda d: d.replace(b'"upload_id": "id-1"', b'"upload_id": 7'), "malformed"),
        (lambda d: d.replace(b'"1": {', b'"0": {'), "malformed"),
        (lambda d: d.replace(b'"bucket": "b",', b""), "malformed"),
    ],
    ids=["truncated", "array", "version", "kind", "negative", "type", "part-0", "missing"],
)
def test_malformed_checkpoints_are_refused(mangle: object, match: str) -> None:
    data = _upload().to_json()
    assert callable(mangle)
    with pytest.raises(CheckpointError, match=match):
        UploadCheckpoint.from_json(mangle(data))


def test_the_upload_of_a_damaged_checkpoint_can_still_be_named() -> None:
    data = _upload().to_json().replace(b'"version": 1', b'"version": 99')
    assert peek_upload(data) == ("b", "k", "id-1")
    assert peek_upload(b"{garbage") is None
    whole = _upload().to_json()
    assert peek_upload(whole[: whole.index(b'"source_path"')]) == ("b", "k", "id-1")
    assert peek_upload(whole[: whole.index(b'"upload_id"') + 16]) is None


def test_no_credential_is_kept_from_a_url() -> None:
    url = "https://user:secret@host/path/f.bin?X-Amz-Signature=abc&X-Amz-Credential=AK"
    assert shown_source(url) == "https://host/path/f.bin"
    checkpoint = DownloadCheckpoint(
        shown_source(url), source_digest(url), "/d", "/d.tmp", 1, 1, '"e"'
    )
    stored = checkpoint.to_json()
    for secret in (b"secret", b"abc", b"AK", b"user"):
        assert secret not in stored
    # The digest tells sources apart (another signature is another source)...
    assert source_digest(url) != source_digest(url.replace("abc", "abd"))
    # ...but not by the userinfo, which is a credential, not an address.
    assert source_digest(url) == source_digest(url.replace("user:secret@", ""))


def test_default_names_differ_by_kind_source_and_dest() -> None:
    names = {
        default_name("upload", "/f", "s3://b/k"),
        default_name("download", "/f", "s3://b/k"),
        default_name("upload", "/g", "s3://b/k"),
        default_name("upload", "/f", "s3://b/j"),
    }
    assert len(names) == 4
    assert default_name("upload", "/f", "s3://b/k") == default_name("upload", "/f", "s3://b/k")


# ------------------------------------------------------------------- reconciling


def _reconcile(recorded: dict[int, PartRecord], listed: list[ListedPart]) -> Reconciliation:
    checkpoint = _upload()
    checkpoint.parts = recorded
    return Reconciliation(checkpoint, {p.number: p for p in listed}, {1: 5, 2: 5, 3: 2})


def test_a_recorded_part_is_kept_only_if_store_and_file_agree() -> None:
    r = _reconcile({1: PartRecord('"e1"', "x1", None)}, [ListedPart(1, '"e1"', 5)])
    assert r.keep(1, LocalSlice("x1")) == PartRecord('"e1"', "x1", None)
    assert r.keep(1, LocalSlice("changed")) is None  # the file changed under the part
    other = _reconcile({1: PartRecord('"e1"', "x1", None)}, [ListedPart(1, '"e9"', 5)])
    assert other.keep(1, LocalSlice("x1")) is None  # the store holds other bytes
    assert not r.needs_md5(1)


def test_a_recorded_part_with_another_checksum_is_sent_again() -> None:
    r = _reconcile({1: PartRecord('"e1"', "x1", "c1")}, [ListedPart(1, '"e1"', 5, "c2")])
    assert r.keep(1, LocalSlice("x1")) is None


def test_a_part_the_checkpoint_missed_is_kept_by_md5_or_crc32c() -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    r = _reconcile({}, [ListedPart(2, f'"{md5}"', 5), ListedPart(3, '"x"', 2, "crc")])
    assert r.needs_md5(2)
    assert r.keep(2, LocalSlice("x2", md5=md5)) == PartRecord(f'"{md5}"', "x2", None)
    assert r.keep(2, LocalSlice("x2", md5="f" * 32)) is None
    assert r.keep(3, LocalSlice("x3", crc32c="crc")) == PartRecord('"x"', "x3", "crc")
    assert r.keep(3, LocalSlice("x3", crc32c="other")) is None


def test_parts_not_listed_or_of_another_size_are_sent_again() -> None:
    r = _reconcile(
        {1: PartRecord('"e1"', "x1", None), 2: PartRecord('"e2"', "x2", None)},
        [ListedPart(2, '"e2"', 4), ListedPart(7, '"e7"', 5)],
    )
    assert r.candidates() == set()
    assert r.keep(1, LocalSlice("x1")) is None
    assert r.keep(2, LocalSlice("x2")) is None


def test_stored_json_is_plain() -> None:
    doc = json.loads(_upload().to_json())
    assert doc["kind"] == "upload" and doc["parts"]["1"]["etag"] == '"e1"'
