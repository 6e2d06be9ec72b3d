"""HTTP/1.1 framing for ranged GETs: the request head we send and the response head we parse.

Only what the engine's own ranged-GET client needs (see ``_io/rangeget.py``): one GET per
request, Content-Length bodies, keep-alive. Anything else in a response (chunked encoding, a
missing length, a malformed head) is reported, so the caller can fail or fall back.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEAD = 64 * 1024
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


class HeadError(ValueError):
    """A response head that is not valid HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    reason: str
    headers: dict[str, str]
    """Lower-case names; repeated fields joined with ", " as RFC 9110 allows."""

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        if value is None or "transfer-encoding" in self.headers:
            return None
        if not value.isdigit() or not value.isascii():
            raise HeadError(f"invalid Content-Length {value!r}")
        return int(value)

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        return "close" not in tokens


def request_head(method: str, target: str, host: str, headers: list[tuple[str, str]]) -> bytes:
    """The bytes of a request head; header values must not contain CR or LF."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def find_head_end(data: bytes | bytearray, end: int, start: int = 0) -> int:
    """Index just past the blank line ending the head within ``data[:end]``, or -1.

    ``start`` is where new bytes begin, so a search resumes without rescanning the head.
    """
    index = data.find(b"\r\n\r\n", max(0, start - 3), end)
    return -1 if index < 0 else index + 4


def parse_response_head(data: bytes) -> ResponseHead:
    """Parse a status line and header fields (``data`` ends with the blank line)."""
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise HeadError(str(exc)) from None
    lines = text.split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[0]) != 8:
        raise HeadError(f"invalid status line {status_line!r}")
    if not (parts[1].isdigit() and len(parts[1]) == 3):
        raise HeadError(f"invalid status code in {status_line!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        name = name.lower()
        if not sep or not name or not set(name) <= _TOKEN_CHARS:
            raise HeadError(f"invalid header line {line!r}")
        value = value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return ResponseHead(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)
