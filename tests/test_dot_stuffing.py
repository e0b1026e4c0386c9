"""A POP3 multi-line answer read in pieces: byte for byte, wherever the pieces are cut."""

from __future__ import annotations

import pytest

from shared.adapters.dot_stuffing import MultilineBody

MULTILINE = [
    (b".\r\n", b""),
    (b"Subject: x\r\n\r\nbody\r\n.\r\n", b"Subject: x\r\n\r\nbody\r\n"),
    # Dot-stuffing undone: one leading dot removed, only one; the first line too.
    (b"..\r\n..hidden\r\n...\r\n.\r\n", b".\r\n.hidden\r\n..\r\n"),
    # Line ends as the server sent them: bare LF, bare CR inside a line.
    (b"a\nb\rc\r\n.\n", b"a\nb\rc\r\n"),
    (b"NUL\x00byte\r\n\xff\xfe\r\n.\r\n", b"NUL\x00byte\r\n\xff\xfe\r\n"),
    # A line that only looks like the end is not it.
    (b". \r\n.x\r\n.\r\n", b" \r\nx\r\n"),
    (b"x\r\n..\r\n\r\n.\r\n", b"x\r\n.\r\n\r\n"),
]


def read(wire: bytes, cuts: list[int]) -> tuple[bytes, MultilineBody]:
    body = MultilineBody()
    out = b""
    start = 0
    for end in [*cuts, len(wire)]:
        out += body.feed(wire[start:end])
        start = end
    return out, body


@pytest.mark.parametrize(("wire", "message"), MULTILINE)
def test_every_cut_in_two_and_three_pieces_gives_the_message(wire: bytes, message: bytes):
    for first in range(len(wire) + 1):
        for second in range(first, len(wire) + 1):
            out, body = read(wire, [first, second])
            assert (out, body.finished, body.after) == (message, True, b""), (first, second)


def test_a_large_message_cut_at_every_line_edge_comes_out_whole():
    lines = [b".starts with a dot\r\n", b"plain\r\n", b".\r\n", b"..\r\n", b"\r\n", b"x" * 5000 + b"\r\n"]
    message = b"".join(lines) * 20
    wire = b"".join(b"." + line if line.startswith(b".") else line for line in lines) * 20 + b".\r\n"
    for size in (1, 2, 3, 4, 5, 7, 4096, 65536):
        out, body = read(wire, list(range(size, len(wire), size)))
        assert out == message and body.finished


def test_a_message_cut_before_its_end_is_not_finished():
    for wire in (b"", b"Subject: x\r\n", b"a\r\n..\r\n", b"a\r\n.\r"):
        out, body = read(wire, [])
        assert not body.finished
        assert len(out) <= len(wire)


def test_bytes_after_the_end_are_kept_apart():
    out, body = read(b"a\r\n.\r\n+OK next\r\n", [4])
    assert (out, body.finished, body.after) == (b"a\r\n", True, b"+OK next\r\n")
