"""Deterministic test messages of a given size, and a simple file format to hand them to
a subprocess (the storage limit uploads exactly these bytes)."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

_LINE = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs."
_LEN = struct.Struct(">Q")


def message_id_of(workload: str, index: int) -> str:
    """The Message-ID of message ``index`` of a workload (its mailbox's local part)."""
    return f"<{workload}.{index}@bench.example>"


def make_message(workload: str, index: int, size: int) -> bytes:
    """An RFC 5322 message (CRLF line ends) of exactly ``size`` bytes when ``size`` is
    at least the header's length; a unique Message-ID per (workload, index)."""
    header = (
        f"From: Bench Sender {index % 97} <sender{index % 97}@bench.example>\r\n"
        f"To: Bench Mailbox <{workload}@bench.example>\r\n"
        f"Subject: bench {workload} message {index}\r\n"
        f"Date: Mon, 03 Mar 2025 10:{index // 60 % 60:02d}:{index % 60:02d} +0000\r\n"
        f"Message-ID: {message_id_of(workload, index)}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode()
    room = size - len(header)
    if room <= 0:
        return header
    line = b"%08d " % index + _LINE + b"\r\n"
    repeats, rest = divmod(room, len(line))
    body = line * repeats
    if rest:
        # End on CRLF when there is room for it, so the body stays well formed.
        tail = line[: rest - 2] + b"\r\n" if rest >= 2 else b"\n"
        body += tail
    return header + body


def write_messages(path: Path, messages: Iterable[bytes]) -> tuple[int, int]:
    """Store messages length-prefixed; returns (count, total bytes)."""
    count = total = 0
    with path.open("wb") as fh:
        for raw in messages:
            fh.write(_LEN.pack(len(raw)))
            fh.write(raw)
            count += 1
            total += len(raw)
    return count, total


def read_messages(path: Path) -> Iterator[bytes]:
    """The messages written by :func:`write_messages`, in order."""
    with path.open("rb") as fh:
        while head := fh.read(_LEN.size):
            (length,) = _LEN.unpack(head)
            data = fh.read(length)
            if len(data) != length:
                raise ValueError(f"{path} is truncated")
            yield data
