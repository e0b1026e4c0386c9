"""The body of a POP3 multi-line answer, read in pieces of any size (RFC 1939, 3).

The server ends the answer with a line holding only ``.`` and prepends a ``.`` to every
line that starts with one. Undone here on whole buffers rather than line by line, so a
100 MB message costs a few passes of ``bytes.find``/``replace`` and no per-line Python,
and a piece boundary may fall anywhere: inside a line, between CR and LF, or right after
the line end that precedes a stuffed dot.
"""

from __future__ import annotations

# The answer's end: a line of one dot (CRLF, or a bare LF as some servers send).
_ENDS = (b"\n.\r\n", b"\n.\n")
# Held back from each piece: an end mark may begin in it (its LF kept too, see feed).
_HELD = max(len(end) for end in _ENDS)


class MultilineBody:
    """Feeds on the bytes after ``+OK ...\\r\\n``; gives the message as the server meant it."""

    def __init__(self) -> None:
        # A line end stands before the first line, so that line is treated like any other;
        # it is not part of the message and is dropped from the first bytes given out.
        self._held = b"\n"
        self._leading = True
        self.finished = False
        self.after = b""  # bytes that came after the end mark (none from a well-behaved server)

    def feed(self, data: bytes) -> bytes:
        """The message bytes that ``data`` completes (possibly none); sets ``finished`` at the end."""
        if self.finished:
            self.after += data
            return b""
        buffer = self._held + data
        ends = [(at, len(end)) for end in _ENDS if (at := buffer.find(end)) >= 0]
        if ends:
            at, length = min(ends)
            out, self._held = buffer[:at + 1], b""
            self.after = buffer[at + length:]
            self.finished = True
        else:
            cut = len(buffer) - _HELD
            if cut > 0 and buffer[cut - 1] == 0x0A:
                cut -= 1  # keep a line end with the dot that may follow it
            if cut <= 0:
                self._held = buffer
                return b""
            out, self._held = buffer[:cut], buffer[cut:]
        out = out.replace(b"\n.", b"\n")
        if self._leading:
            out = out[1:]
            self._leading = False
        return out
