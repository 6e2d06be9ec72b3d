"""The local S3 server's store, directly: the order listings walk keys in, their cache, and
the metadata file that holds a small object's bytes too."""

from __future__ import annotations

import json
import os
import random
from typing import TYPE_CHECKING, Any

import pytest

from asynctransfer.servers._s3_store import ObjectMeta, Store, check_key, read_object_file
from asynctransfer.servers._s3_xml import S3Error

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Characters around '/' in code point order ('-' < '.' < '/' < '0'), an escaped one ('%'), a
# non-ASCII one: where a directory's keys must slot in between a directory's neighbours.
ALPHABET = ["a", "b", "-", ".", "/", "0", "%", " ", "é", "~", "z"]
# ... and segments long enough to continue in '@+' directories (over 200 encoded characters).
LONG = ["x" * 300, "é" * 150, "é" * 150 + "/x", "é" * 149]
SPECIAL = ["a", "a/", "a//b", "a-b", "a/b", "a0", *LONG]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path, fsync=False)
    store.create_bucket("bkt", 0.0)
    yield store
    store.close()


def _meta(key: str) -> ObjectMeta:
    return ObjectMeta(
        key=key, size=1, etag="0" * 32, last_modified=0.0, content_type="x", headers={}
    )


def _random_keys(rng: random.Random, count: int) -> set[str]:
    keys = set(SPECIAL)
    while len(keys) < count:
        key = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 7)))
        try:
            check_key(key)
        except S3Error:
            continue  # ('.' and '..' segments)
        keys.add(key)
    return keys


def test_iter_keys_walks_in_order_from_any_point(store: Store) -> None:
    rng = random.Random(7)
    keys = _random_keys(rng, 250)
    for key in keys:
        store.commit_inline("bkt", key, [b"x"], _meta(key))
    ordered = sorted(keys)
    assert [key for key, _ in store.iter_keys("bkt", "")] == ordered
    afters = ["", "a/", "a", "é", "zzz", *rng.sample(ordered, 12), *(k + "/" for k in ordered[:5])]
    for prefix in ("", "a", "a/", "a/b", "b", "-", "é" * 150, "nothing/"):
        for after in afters:
            expected = [k for k in ordered if k.startswith(prefix) and k > after]
            got = list(store.iter_keys("bkt", prefix, after))
            assert [key for key, _ in got] == expected, (prefix, after)
    for key, path in store.iter_keys("bkt", "a/"):
        meta = store.read_meta(path)
        assert meta is not None
        assert (meta.key, meta.inline) == (key, True)


def test_iter_keys_is_lazy(store: Store) -> None:
    """A page of a listing reads the directories it walks through, not the whole bucket."""
    for top in ("a", "b", "c"):
        for n in range(20):
            key = f"{top}/{n:02d}"
            store.commit_inline("bkt", key, [b"x"], _meta(key))
    walked = store.iter_keys("bkt", "")
    assert [next(walked)[0] for _ in range(3)] == ["a/00", "a/01", "a/02"]
    (store.root / "bkt" / "c").rename(store.root / "bkt" / "gone")  # (not entered yet)
    assert [key for key, _ in walked][-1] == "b/19"


def test_listings_scan_a_directory_once_until_the_store_changes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"d/{n:02d}" for n in range(30)]
    for key in keys:
        store.commit_inline("bkt", key, [b"x"], _meta(key))

    def listed(after: str = "") -> list[str]:
        return [key for key, _ in store.iter_keys("bkt", "", after)]

    assert listed() == keys
    scans: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path: str) -> Any:
        scans.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    assert listed("d/10") == keys[11:]  # the next page
    assert listed("d/") == keys
    assert scans == []
    store.commit_inline("bkt", "d/05x", [b"x"], _meta("d/05x"))
    assert listed("d/05") == ["d/05x", *keys[6:]]
    assert scans
    store.delete("bkt", "d/00")
    assert listed() == ["d/01", "d/02", "d/03", "d/04", "d/05", "d/05x", *keys[6:]]


def test_metadata_file_with_and_without_inline_bytes(tmp_path: Path) -> None:
    """The metadata is the first line; what follows (bytes with newlines of their own) is an
    inline object's. A long document (a multipart object's parts) is read whole either way."""
    long_doc = {"parts": ["x" * 100] * 200}
    plain = tmp_path / "plain"
    plain.write_bytes(json.dumps(long_doc).encode())
    inline = tmp_path / "inline"
    body = b"\n" + os.urandom(100_000) + b"\n"
    inline.write_bytes(json.dumps({"inline": True}).encode() + b"\n" + body)
    for whole in (False, True):
        found = read_object_file(str(plain), whole=whole)
        assert found is not None
        assert (found[0], bytes(found[1])) == (long_doc, b"")
        found = read_object_file(str(inline), whole=whole)
        assert found is not None
        assert (found[0], bytes(found[1])) == ({"inline": True}, body if whole else b"")
    assert read_object_file(str(tmp_path / "missing"), whole=True) is None
