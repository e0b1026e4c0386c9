"""Reading one HTTP/1.1 answer from a connection's buffered reader: a status line, header
lines, and a body framed by Content-Length, by chunked transfer coding, or by the connection's
end; interim 1xx answers are skipped. Malformed or cut answers raise ValueError."""

from __future__ import annotations

import io
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

LINE_LIMIT = 65536
_HEADER_LIMIT = 200


class Headers(MutableMapping[str, str]):
    """An answer's headers, looked up in any case, listed with the names as sent; a repeated
    header's values joined with ", ". (azure-core's CaseInsensitiveDict costs several times
    more per header, and every answer has about ten.)"""

    __slots__ = ("_by_lower",)

    def __init__(self, items: dict[str, str] | None = None) -> None:
        self._by_lower: dict[str, tuple[str, str]] = {}
        for name, value in (items or {}).items():
            self[name] = value

    def __getitem__(self, name: str) -> str:
        return self._by_lower[name.lower()][1]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        item = self._by_lower.get(name.lower())
        return default if item is None else item[1]

    def __setitem__(self, name: str, value: str) -> None:
        self._by_lower[name.lower()] = (name, value)

    def __delitem__(self, name: str) -> None:
        del self._by_lower[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._by_lower.values())

    def __len__(self) -> int:
        return len(self._by_lower)

    def add(self, name: str, value: str) -> None:
        """One more header line."""
        lower = name.lower()
        seen = self._by_lower.get(lower)
        self._by_lower[lower] = (name, value) if seen is None else (seen[0], f"{seen[1]}, {value}")


@dataclass
class Answer:
    status: int
    reason: str
    headers: Headers
    body: bytes


def read_answer(reader: io.BufferedReader, method: str, line: bytes) -> tuple[Answer, bool]:
    """The answer whose first line is ``line`` (after any interim 1xx), and whether the
    connection can be used again."""
    while True:
        version, status, reason = _status_line(line)
        headers = _headers(reader)
        if not 100 <= status < 200:
            break
        line = read_line(reader)
        if not line:
            raise ValueError("the connection closed after an interim answer")
    keep = version == "HTTP/1.1" and "close" not in (headers.get("connection") or "").lower()
    if method.upper() == "HEAD" or status in (204, 304):
        return Answer(status, reason, headers, b""), keep
    if "chunked" in (headers.get("transfer-encoding") or "").lower():
        return Answer(status, reason, headers, _chunked(reader)), keep
    length = headers.get("content-length")
    if length is None:
        return Answer(status, reason, headers, reader.read()), False  # framed by the close
    if not length.strip().isdigit():
        raise ValueError(f"bad Content-Length {length!r}")
    return Answer(status, reason, headers, _exactly(reader, int(length))), keep


def read_line(reader: io.BufferedReader) -> bytes:
    line = reader.readline(LINE_LIMIT + 1)
    if len(line) > LINE_LIMIT:
        raise ValueError("an answer line longer than 64 KiB")
    return line


def _status_line(line: bytes) -> tuple[str, int, str]:
    words = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(words) < 2 or not words[0].startswith("HTTP/1.") or not words[1].isdigit():
        raise ValueError(f"not an HTTP status line: {line[:80]!r}")
    return words[0], int(words[1]), words[2] if len(words) > 2 else ""


def _headers(reader: io.BufferedReader) -> Headers:
    headers = Headers()
    for _ in range(_HEADER_LIMIT):
        line = read_line(reader)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise ValueError("the connection closed in the answer's headers")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise ValueError(f"not a header line: {line[:80]!r}")
        headers.add(name.strip(), value.strip())
    raise ValueError(f"more than {_HEADER_LIMIT} header lines")


def _exactly(reader: io.BufferedReader, size: int) -> bytes:
    body = reader.read(size)
    if len(body) != size:
        raise ValueError(f"the connection closed after {len(body)} of {size} body bytes")
    return body


def _chunked(reader: io.BufferedReader) -> bytes:
    pieces: list[bytes] = []
    while True:
        size_line = read_line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ValueError(f"bad chunk size {size_line[:20]!r}") from None
        if size == 0:
            _headers(reader)  # trailers, up to the empty line
            return b"".join(pieces)
        pieces.append(_exactly(reader, size))
        if read_line(reader) not in (b"\r\n", b"\n"):
            raise ValueError("a chunk not followed by its line end")
