"""Reading a mail server's socket so that no server can hold a poll past its time box.

imaplib and poplib read every answer from a file over the socket (``sock.makefile('rb')``).
The adapters give them a :func:`paced_file` of the same socket instead, which bounds
each read three ways: ``IMAP_TIMEOUT_SECONDS`` without a byte (a stall); a minimum pace
while an answer is awaited, so a server trickling a byte every few seconds (which never
trips a per-read timeout) is cut too; and the end of the poll's time box, past which
nothing more is read.
"""

from __future__ import annotations

import io
import socket
import time
from typing import Any

# While an answer is awaited, at least this many bytes per second of waiting, judged over
# each IMAP_TIMEOUT_SECONDS of waiting: a slow link passes, a trickle does not.
MIN_BYTES_PER_SECOND = 1024
# The goodbye (LOGOUT, QUIT) of a session gets at most this long.
GOODBYE_SECONDS = 5.0
_BUFFER = 64 * 1024


class ServerTooSlow(TimeoutError):
    """The server stalled, trickled, or was still answering when the time box ended."""


class Pace:
    """The limits on one connection's reads: per read, per answer, and the time box's end
    (a ``time.monotonic()`` value, or None)."""

    def __init__(self, read_timeout: float, deadline: float | None = None) -> None:
        self.read_timeout = read_timeout
        self.deadline = deadline
        # A read failed or met the end of the stream: the session cannot be used again.
        self.broken = False
        self._sock: socket.socket | None = None
        self._waited = 0.0
        self._received = 0

    def attach(self, sock: socket.socket) -> None:
        """The socket the answers come from (again after STARTTLS)."""
        self._sock = sock

    def connect_timeout(self) -> float:
        """How long connecting (TCP, TLS, greeting) may take."""
        return self._timeout()

    def new_answer(self) -> None:
        """A command is about to be sent: its answer gets a fresh pace window, and the send
        itself cannot outlast the time box. Refused on a broken connection: what the server
        sends next could be the rest of a message, read as if it were the answer."""
        if self.broken:
            raise ConnectionAbortedError("the connection was left in the middle of an answer "
                                         "and is not used again")
        self._waited, self._received = 0.0, 0
        if self._sock is not None:
            self._sock.settimeout(self._timeout())

    def goodbye(self) -> None:
        """The session is ending: its last answer gets a few seconds at most."""
        end = time.monotonic() + GOODBYE_SECONDS
        self.deadline = end if self.deadline is None else min(self.deadline, end)
        self.new_answer()

    def _timeout(self) -> float:
        if self.deadline is None:
            return self.read_timeout
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.broken = True
            raise self._out_of_time()
        return min(self.read_timeout, remaining)

    @staticmethod
    def _out_of_time() -> ServerTooSlow:
        # Not "the run's time box": with many mailboxes, each gets a share of it.
        return ServerTooSlow("this mailbox's share of the run's time box ran out while the "
                             "server was still answering")

    def read(self, sock: socket.socket, buffer: Any) -> int:
        """One read into ``buffer``, within every limit."""
        try:
            sock.settimeout(self._timeout())
            started = time.monotonic()
            count = sock.recv_into(buffer)
        except ServerTooSlow:
            raise
        except TimeoutError as e:
            self.broken = True
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise self._out_of_time() from e
            raise ServerTooSlow(f"nothing arrived for {self.read_timeout:g} s "
                                "(IMAP_TIMEOUT_SECONDS)") from e
        except OSError:
            self.broken = True
            raise
        if count == 0:
            self.broken = True
            return 0
        self._waited += time.monotonic() - started
        self._received += count
        if self._waited >= self.read_timeout:
            if self._received < MIN_BYTES_PER_SECOND * self._waited:
                self.broken = True
                raise ServerTooSlow(
                    f"the server sent only {self._received} bytes in {self._waited:.0f} s of "
                    f"waiting (under {MIN_BYTES_PER_SECOND} bytes/s); the connection was cut")
            self._waited, self._received = 0.0, 0
        return count


class PacedReader(io.RawIOBase):
    """A socket's incoming bytes, read within a :class:`Pace`."""

    def __init__(self, sock: socket.socket, pace: Pace) -> None:
        super().__init__()
        self._sock = sock
        self._pace = pace
        pace.attach(sock)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._pace.read(self._sock, buffer)


def paced_file(sock: socket.socket, pace: Pace) -> io.BufferedReader:
    """A buffered reader of ``sock`` within ``pace``, for a mail library to read answers from."""
    return io.BufferedReader(PacedReader(sock, pace), _BUFFER)
