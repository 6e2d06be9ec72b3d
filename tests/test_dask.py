"""``asynctransfer.dask`` on a real cluster: a ``LocalCluster`` of two worker processes (one
thread each) talking to moto's S3 server, as a cluster would talk to a store. The workers are
separate processes started after the session's dummy AWS credentials were set: they inherit
them, and the endpoint goes to them in the TransferConfig."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from asynctransfer import NotFoundError, TransferConfig
from asynctransfer._core.units import KiB, MiB

from .conftest import SMALL_PART, random_bytes, write_random

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("asynctransfer.dask")

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from asynctransfer import BatchResult

    from .conftest import Bucket

CHUNK = "asynctransfer-chunk"


@pytest.fixture(scope="module")
def client(_aws_environment: None) -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        yield client


def worker_pids(client: Any) -> dict[str, int]:
    pids: dict[str, int] = client.run(os.getpid)
    return pids


def chunk_workers(stream: Any) -> list[str]:
    """The worker of each chunk that ran, from a ``get_task_stream`` record."""
    return [r["worker"] for r in stream.data if str(r["key"]).startswith(CHUNK)]


def most_chunks_at_once(client: Any, stream: Any) -> int:
    """The most chunks of the run recorded in ``stream`` that the scheduler held at once
    (submitted and not finished), replayed from its transition log: one clock, unlike the
    task stream's start and stop times, which each worker shifts by its own estimate of its
    delay to the scheduler."""
    (run,) = {
        str(r["key"]).rsplit("-", 1)[0] for r in stream.data if str(r["key"]).startswith(CHUNK)
    }

    def transitions(dask_scheduler: Any) -> list[tuple[str, str]]:
        # Entries: (key, start, finish, recommendations, stimulus_id, timestamp).
        return [
            (str(t[0]), t[2])
            for t in dask_scheduler.transition_log
            if str(t[0]).startswith(run + "-")
        ]

    states: dict[str, str] = {}
    peak = 0
    for key, state in client.run_on_scheduler(transitions):
        states[key] = state
        active = ("waiting", "queued", "no-worker", "processing")
        peak = max(peak, sum(s in active for s in states.values()))
    return peak


# ---------------------------------------------------------------------- pure: the shares


def test_the_limits_are_shared_so_the_sums_stay_within_them() -> None:
    config = TransferConfig(
        part_size=8 * MiB,
        max_concurrency=10,
        max_bytes_per_second=1_000_001,
        max_requests_per_second=50.0,
    )
    share = dask.share_config(config, 3)
    assert share.max_concurrency == 3
    assert share.max_memory == (12 * 8 * MiB) // 3  # of the default budget, (10 + 2) parts
    assert share.max_bytes_per_second == 333_333
    assert share.max_requests_per_second == pytest.approx(50.0 / 3)
    assert (
        dataclasses.replace(
            share,
            max_concurrency=10,
            max_memory=None,
            max_bytes_per_second=1_000_001,
            max_requests_per_second=50.0,
        )
        == config
    )  # nothing else changed
    assert dask.share_config(config, 1).memory_budget == config.memory_budget
    unlimited = dask.share_config(TransferConfig(max_memory=64 * MiB), 4)
    assert unlimited.max_bytes_per_second is None and unlimited.max_requests_per_second is None
    assert unlimited.max_memory == 16 * MiB


@pytest.mark.parametrize(
    ("config", "parallel", "limit"),
    [
        (TransferConfig(max_concurrency=4), 5, "max_concurrency=4"),
        (TransferConfig(max_concurrency=8, max_memory=24 * MiB), 4, "max_memory"),
        (TransferConfig(max_bytes_per_second=3), 4, "max_bytes_per_second=3"),
        (TransferConfig(), 0, "parallel must be at least 1"),
    ],
)
def test_a_limit_that_cannot_be_split_so_many_ways_is_named(
    config: TransferConfig, parallel: int, limit: str
) -> None:
    with pytest.raises(ValueError, match=limit):
        dask.share_config(config, parallel)


def test_by_default_one_chunk_per_worker_thread_as_the_limits_allow() -> None:
    default = dask._default_parallel
    assert default(TransferConfig(max_concurrency=64), 16) == 16
    assert default(TransferConfig(max_concurrency=10), 64) == 10
    # 24 MiB of buffers hold three 8 MiB parts: three shares at most.
    assert default(TransferConfig(max_concurrency=64, max_memory=24 * MiB), 16) == 3
    assert default(TransferConfig(max_concurrency=64, max_bytes_per_second=5), 16) == 5
    for config, threads in [(TransferConfig(), 7), (TransferConfig(max_memory=9 * MiB), 7)]:
        dask.share_config(config, default(config, threads))  # always a valid share
    with pytest.raises(RuntimeError, match="no workers"):
        default(TransferConfig(), 0)


def test_a_manifest_is_one_tab_separated_pair_per_line(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.tsv"
    manifest.write_text(
        "# src\tdest\n\ndata/a b.bin\ts3://bucket/a b.bin\r\ns3://bucket/k\t/tmp/k\n",
        encoding="utf-8",
    )
    assert list(dask.read_manifest(manifest)) == [
        ("data/a b.bin", "s3://bucket/a b.bin"),
        ("s3://bucket/k", "/tmp/k"),
    ]
    manifest.write_text("a\tb\nno tab here\n", encoding="utf-8")
    jobs = dask.read_manifest(manifest)
    assert next(jobs) == ("a", "b")  # read lazily: the bad line is met only when reached
    with pytest.raises(ValueError, match=r"jobs\.tsv:2: expected SRC<TAB>DEST"):
        next(jobs)


# ---------------------------------------------------------------------- on the cluster


def test_the_workers_inherit_the_environment(client: Any) -> None:
    seen = client.run(os.environ.get, "AWS_ACCESS_KEY_ID")
    assert list(seen.values()) == ["testing", "testing"]
    pids = set(worker_pids(client).values())
    assert len(pids) == 2 and os.getpid() not in pids


def test_a_tree_goes_up_in_chunks_spread_over_both_workers(
    client: Any, bucket: Bucket, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    sizes = [i * 997 for i in range(48)] + [2 * SMALL_PART + 5, 3 * SMALL_PART]  # 2 multipart
    expected = {}
    for i, size in enumerate(sizes):
        path = tree / f"d{i % 4}" / f"f{i:02}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        expected[f"tree/d{i % 4}/f{i:02}.bin"] = write_random(path, size, seed=i)

    with distributed.get_task_stream(client) as stream:
        result = dask.copy_tree(
            tree, bucket.url("tree/"), client=client, config=bucket.config, chunk_size=10
        )
    assert result.ok, result.failures
    assert (result.files, result.bytes) == (50, sum(sizes))
    for key, data in expected.items():
        assert bucket.read(key) == data, key
    listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="tree/")
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(expected)

    workers = chunk_workers(stream)
    assert len(workers) == 5  # 50 files, 10 a chunk
    assert set(workers) == set(worker_pids(client))  # both worker processes took chunks
    assert most_chunks_at_once(client, stream) == 2  # one per worker thread


def test_a_tree_comes_down_and_no_key_lands_outside_the_directory(
    client: Any, bucket: Bucket, tmp_path: Path
) -> None:
    expected = {}
    for i in range(6):
        expected[f"f{i}.bin"] = random_bytes(2000 + i, seed=i)
        bucket.client.put_object(Bucket=bucket.name, Key=f"t/f{i}.bin", Body=expected[f"f{i}.bin"])
    unsafe = ["t/../escape.bin", "t/a/../../up.bin", "t/./dot.bin"]
    for key in unsafe:
        bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b"not here")
    dest = tmp_path / "deep" / "dest"

    result = dask.copy_tree(
        bucket.url("t"), dest, client=client, config=bucket.config, chunk_size=2
    )
    assert result.files == 6
    assert sorted(f.src for f in result.failures) == sorted(bucket.url(k) for k in unsafe)
    assert {f.error_type for f in result.failures} == {"InvalidRequestError"}
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == expected
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(expected)


def test_filters_apply_and_a_name_no_key_can_hold_is_a_failure(
    client: Any, bucket: Bucket, tmp_path: Path
) -> None:
    (tmp_path / "keep.txt").write_bytes(b"kept")
    (tmp_path / "drop.tmp").write_bytes(b"dropped")
    bad = tmp_path / os.fsdecode(b"bad-\xff.txt")
    bad.write_bytes(b"no key for it")
    result = dask.copy_tree(
        tmp_path,
        bucket.url("f/"),
        client=client,
        config=bucket.config,
        filters=[("exclude", "*.tmp")],
    )
    assert (result.files, result.bytes) == (1, 4)
    assert [(f.src, f.error_type) for f in result.failures] == [(str(bad), "InvalidRequestError")]
    listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="f/")["Contents"]
    assert [o["Key"] for o in listed] == ["f/keep.txt"]


def test_a_manifest_with_bad_entries_fails_those_and_copies_the_rest(
    client: Any, bucket: Bucket, tmp_path: Path
) -> None:
    up, down = tmp_path / "up", tmp_path / "down"
    up.mkdir()
    lines, expected_local, expected_remote = [], {}, {}
    for i in range(12):
        data = write_random(up / f"u{i}.bin", 3 * KiB + i, seed=100 + i)
        lines.append(f"{up / f'u{i}.bin'}\t{bucket.url(f'up/u{i}.bin')}")
        expected_remote[f"up/u{i}.bin"] = data
    for i in range(12):
        data = random_bytes(5 * KiB + i, seed=200 + i)
        bucket.client.put_object(Bucket=bucket.name, Key=f"src/d{i}.bin", Body=data)
        lines.append(f"{bucket.url(f'src/d{i}.bin')}\t{down / f'd{i}.bin'}")
        expected_local[down / f"d{i}.bin"] = data
    missing_file = (str(up / "missing.bin"), bucket.url("up/missing.bin"))
    missing_key = (bucket.url("src/missing.bin"), str(down / "missing.bin"))
    lines.insert(3, "\t".join(missing_file))
    lines.insert(17, "\t".join(missing_key))
    manifest = tmp_path / "jobs.tsv"
    manifest.write_text("# uploads, then downloads\n" + "\n".join(lines) + "\n", encoding="utf-8")

    result = dask.copy_many(
        dask.read_manifest(manifest), client=client, config=bucket.config, chunk_size=4
    )
    assert (result.files, result.bytes) == (
        24,
        sum(map(len, expected_local.values())) + sum(map(len, expected_remote.values())),
    )
    failed = {(f.src, f.dest): f for f in result.failures}
    assert set(failed) == {missing_file, missing_key}
    assert failed[missing_file].error_type == "LocalFileError"
    assert failed[missing_key].error_type == "NotFoundError"
    assert "missing.bin" in failed[missing_key].error
    for key, data in expected_remote.items():
        assert bucket.read(key) == data, key
    for path, data in expected_local.items():
        assert path.read_bytes() == data, path
    assert not (down / "missing.bin").exists()
    assert result.to_dict()["failed"] == 2


def test_a_bucket_that_does_not_exist_fails_the_call_as_it_fails_a_batch(
    client: Any, bucket: Bucket, tmp_path: Path
) -> None:
    write_random(tmp_path / "a.bin", 100)
    jobs = [(str(tmp_path / "a.bin"), f"s3://no-such-bucket-{bucket.name}/a.bin")]
    with pytest.raises(NotFoundError) as raised:
        dask.copy_many(jobs, client=client, config=bucket.config)
    assert raised.value.code == "NoSuchBucket"


def test_fail_fast_submits_no_chunk_after_a_failure(
    client: Any, bucket: Bucket, tmp_path: Path
) -> None:
    for i in range(20):
        write_random(tmp_path / f"f{i:02}.bin", 1000 + i, seed=i)
    jobs = [(str(tmp_path / f"f{i:02}.bin"), bucket.url(f"ff/f{i:02}.bin")) for i in range(20)]
    jobs[2] = (str(tmp_path / "missing.bin"), bucket.url("ff/missing.bin"))
    # One chunk at a time: the first one fails, and the three others are never submitted.
    with distributed.get_task_stream(client) as stream:
        result = dask.copy_many(
            iter(jobs),
            client=client,
            config=bucket.config,
            chunk_size=5,
            fail_fast=True,
            parallel=1,
        )
    assert [f.src for f in result.failures] == [jobs[2][0]]
    assert len(chunk_workers(stream)) == 1
    assert result.files <= 4
    listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="ff/").get("Contents", [])
    assert len(listed) >= result.files  # (a PUT cancelled on its way may have landed)
    assert all(int(o["Key"][4:6]) < 5 for o in listed)  # nothing of the later chunks


def test_fail_fast_stops_the_chunks_already_running(
    client: Any, bucket: Bucket, tmp_path: Path
) -> None:
    """Two chunks at once: the first fails at once; the second, throttled so that it would
    take ~11 s (720 kB at 40 kB/s, less a burst of one part), stops taking files when it
    sees the stop event, and the call returns."""
    for i in range(60):
        write_random(tmp_path / f"f{i:02}.bin", 12_000, seed=i)
    first = [(str(tmp_path / "missing.bin"), bucket.url("a/missing.bin"))]
    first += [(str(tmp_path / f"f{i:02}.bin"), bucket.url(f"a/f{i:02}.bin")) for i in range(59)]
    second = [(str(tmp_path / f"f{i:02}.bin"), bucket.url(f"b/f{i:02}.bin")) for i in range(60)]
    config = dataclasses.replace(bucket.config, max_bytes_per_second=80_000)
    result = dask.copy_many(
        first + second,
        client=client,
        config=config,
        chunk_size=60,
        fail_fast=True,
        parallel=2,
    )
    assert [f.src for f in result.failures] == [first[0][0]]
    listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="b/").get("Contents", [])
    assert len(listed) < 60  # (typically ~30: a burst of one part, then ~3 files a second)


def test_the_jobs_are_read_as_chunks_finish_and_parallel_bounds_them(
    client: Any, bucket: Bucket, tmp_path: Path
) -> None:
    for i in range(8):
        write_random(tmp_path / f"f{i}.bin", 100 + i, seed=i)
    copied_when_read: list[int] = []

    def jobs() -> Iterator[tuple[str, str]]:
        for i in range(8):
            if i % 2 == 0:  # the first job of a chunk: how many files are copied by now?
                listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="p/")
                copied_when_read.append(listed["KeyCount"])
            yield str(tmp_path / f"f{i}.bin"), bucket.url(f"p/f{i}.bin")

    with distributed.get_task_stream(client) as stream:
        result = dask.copy_many(
            jobs(), client=client, config=bucket.config, chunk_size=2, parallel=1
        )
    assert result.ok and result.files == 8
    assert copied_when_read == [0, 2, 4, 6]  # each chunk read once the one before was done
    assert len(chunk_workers(stream)) == 4
    assert most_chunks_at_once(client, stream) == 1


def test_a_chunk_whose_worker_dies_runs_again_elsewhere(
    client: Any, bucket: Bucket, tmp_path: Path
) -> None:
    """SIGKILL the worker process copying a chunk (a download throttled to last ~4 s): Dask
    runs the chunk again on the other worker, and the file arrives whole."""
    data = random_bytes(4 * MiB, seed=7)
    bucket.client.put_object(Bucket=bucket.name, Key="slow.bin", Body=data)
    dest = tmp_path / "slow.bin"
    config = dataclasses.replace(bucket.config, max_bytes_per_second=1 * MiB)
    pids = worker_pids(client)

    def run() -> BatchResult:
        result: BatchResult = dask.copy_many(
            [(bucket.url("slow.bin"), str(dest))], client=client, config=config, parallel=1
        )
        return result

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(run)
        deadline = time.monotonic() + 30
        busy: list[str] = []
        while not busy and time.monotonic() < deadline:
            busy = [w for w, keys in client.processing().items() if keys]
            time.sleep(0.05)
        assert busy, "the chunk never started"
        time.sleep(0.5)  # well into the download
        os.kill(pids[busy[0]], signal.SIGKILL)
        result = running.result(timeout=60)
    assert result.ok, result.failures
    assert result.files == 1 and dest.read_bytes() == data
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed one
