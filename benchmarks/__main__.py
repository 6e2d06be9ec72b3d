"""``python -m benchmarks s3|http|faults|many [options]``: the suites (see benchmarks/README.md)."""

from __future__ import annotations

import sys

_USAGE = """usage: python -m benchmarks s3 [--size 1GiB] [--repeat 3] [--quick] [--server local|moto] ...
       python -m benchmarks http [--size 1GiB] [--repeat 3] [--quick] [--contestants ...] ...
       python -m benchmarks faults [--size 1GiB] [--repeat 3] [--quick] [--json PATH] ...
       python -m benchmarks many [--files 10000] [--big-size 1GiB] [--repeat 3] [--quick] ...

commands:
  s3    asynctransfer vs boto3, aioboto3, obstore, s3fs on a local S3 endpoint
        (python -m benchmarks s3 --help for its options)
  http  asynctransfer vs curl and aria2c downloading from a local nginx
        (python -m benchmarks http --help for its options)
  faults  asynctransfer vs boto3 through a proxy that answers 503 SlowDown and resets
        (python -m benchmarks faults --help for its options)
  many  asynctransfer's copy_tree vs aioboto3, obstore, s3fs: 10,000 small files, and a
        1 GiB file plus 2,000 small ones, up and down (python -m benchmarks many --help)
"""


def main(argv: list[str]) -> int:
    if argv[:1] == ["s3"]:
        from benchmarks.harness import main as s3

        return s3(argv[1:])
    if argv[:1] == ["http"]:
        from benchmarks.http_suite import main as http

        return http(argv[1:])
    if argv[:1] == ["faults"]:
        from benchmarks.faults import main as faults

        return faults(argv[1:])
    if argv[:1] == ["many"]:
        from benchmarks.many import main as many

        return many(argv[1:])
    sys.stderr.write(_USAGE)
    return 0 if argv[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
