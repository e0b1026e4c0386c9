"""POP3 over TLS with SASL XOAUTH2, through the standard library's poplib.

Exchange Online's POP3 has no SASL-IR: the client sends ``AUTH XOAUTH2``, waits for ``+``,
then sends the base64 string. Messages are read raw, in pieces (``Pop3Session.retrieve_pieces``,
``dot_stuffing``), because poplib's line reader drops line-end information, refuses lines over
2048 bytes and keeps a whole message in memory.
Nothing is deleted unless AFTER_DELIVERY is ``delete`` (``Pop3Session.dele``, committed by
the QUIT that ends the session; a session that broke is closed without QUIT, so it keeps all).
"""

from __future__ import annotations

import base64
import io
import poplib
import socket
import ssl
from collections.abc import Generator
from typing import cast

from shared.adapters.dot_stuffing import MultilineBody
from shared.adapters.mail_server import MailConnector
from shared.adapters.mail_socket import Pace, paced_file
from shared.adapters.pop3_failures import AUTH, LOGIN, ServerClosedConnection, pop3_failure
from shared.adapters.sasl import xoauth2_string
from shared.errors import MailferryError, MailServerError
from shared.model import Secret

_MAX_ANSWER = 8192  # one status line; a JSON challenge is far shorter
_READ_BYTES = 256 * 1024
# A retrieved message is handed out in pieces of this size, so a large one never sits whole
# in memory (and each piece can become one staged block of its blob).
RETR_PIECE_BYTES = 4 * 1024 * 1024


class _PacedFile:
    """Mixed into poplib's classes: the file they read answers from (``self.file =
    self.sock.makefile('rb')``, also after STLS) becomes a paced file of the same socket."""

    pace: Pace
    sock: socket.socket
    _paced: object = None

    @property
    def file(self) -> object:
        return self._paced

    @file.setter
    def file(self, plain: object) -> None:
        if hasattr(plain, "close"):
            plain.close()  # only this reader goes: the socket stays open
        self._paced = None if plain is None else paced_file(self.sock, self.pace)


class _PacedPop3Tls(_PacedFile, poplib.POP3_SSL):  # type: ignore[misc]
    def __init__(self, host: str, port: int, context: ssl.SSLContext, pace: Pace) -> None:
        self.pace = pace
        super().__init__(host, port, context=context, timeout=pace.connect_timeout())


class _PacedPop3Plain(_PacedFile, poplib.POP3):  # type: ignore[misc]
    def __init__(self, host: str, port: int, pace: Pace) -> None:
        self.pace = pace
        super().__init__(host, port, timeout=pace.connect_timeout())


class Pop3MailServer(MailConnector[poplib.POP3, "Pop3Session"]):
    """Opens XOAUTH2 sessions to one POP3 server; a healthy session ends with QUIT."""

    library_errors = (poplib.error_proto,)

    def _client(self, pace: Pace) -> poplib.POP3:
        if self.security == "tls":
            return _PacedPop3Tls(self.host, self.port, self._context, pace)
        client = _PacedPop3Plain(self.host, self.port, pace)
        client.stls(self._context)
        return client

    def _login(self, client: poplib.POP3, address: str, token: Secret, pace: Pace) -> None:
        doing = AUTH
        try:
            answer = _command(client, pace, "AUTH XOAUTH2")
            if answer != b"+" and not answer.startswith(b"+ "):
                raise poplib.error_proto(answer)  # "+OK" is no continuation: not taken
            doing = LOGIN
            answer = _command(client, pace, base64.b64encode(xoauth2_string(address, token)).decode())
            if not answer.startswith(b"+OK"):
                # A JSON challenge saying why; the server wants an empty line, then says -ERR.
                answer = _command(client, pace, "")
            if not answer.startswith(b"+OK"):
                raise poplib.error_proto(answer)
        except (poplib.error_proto, OSError) as e:
            raise pop3_failure(e, doing=doing, server=self.host, mailbox=address) from e

    def _session(self, client: poplib.POP3, address: str, pace: Pace) -> Pop3Session:
        return Pop3Session(client, address, pace)

    def _goodbye(self, client: poplib.POP3) -> None:
        client.quit()

    def _drop(self, client: poplib.POP3) -> None:
        client.close()

    def _failure(self, error: BaseException, doing: str, server: str) -> MailferryError:
        return pop3_failure(error, doing=doing, server=server)


class Pop3Session:
    """A logged-in POP3 connection to one mailbox's Inbox."""

    def __init__(self, client: poplib.POP3, address: str, pace: Pace) -> None:
        self._client = client
        self._address = address
        self._pace = pace
        self.commands = 0

    def list_uidls(self) -> list[tuple[int, str]]:
        self.commands += 1
        try:
            self._pace.new_answer()
            _, lines, _ = self._client.uidl()
        except (poplib.error_proto, OSError) as e:
            raise self._failure(e, "UIDL") from e
        listed = []
        for line in lines:
            number, _, uidl = line.decode("utf-8", "surrogateescape").strip().partition(" ")
            if not number.isdigit() or not uidl:
                raise MailServerError(f"{self._address}: malformed UIDL line {line[:100]!r}.")
            listed.append((int(number), uidl.strip()))
        return listed

    def retrieve(self, number: int) -> bytes:
        """The message as the server sent it: line ends kept, only dot-stuffing undone."""
        return b"".join(self.retrieve_pieces(number))

    def retrieve_pieces(self, number: int) -> Generator[bytes, None, None]:
        """``retrieve`` in pieces of about RETR_PIECE_BYTES, read as they arrive; closing it
        before the end leaves the connection unusable (the rest of the answer is unread)."""
        self.commands += 1
        what = f"RETR {number}"
        body = MultilineBody()
        answering = False
        try:
            _command(self._client, self._pace, what)  # raises on -ERR
            answering = True
            # One receive at a time (read1): ``read(n)`` would wait for n bytes past the end.
            answer = cast(io.BufferedReader, self._client.file)
            # Parts joined once per piece: a growing bytearray, copied out again, left the
            # allocator holding several pieces' worth of freed buffers.
            parts: list[bytes] = []
            size = 0
            while not body.finished:
                data = answer.read1(_READ_BYTES)
                if not data:
                    raise ServerClosedConnection(
                        "the server closed the connection in the middle of a message")
                part = body.feed(data)
                parts.append(part)
                size += len(part)
                if size >= RETR_PIECE_BYTES:
                    yield b"".join(parts)
                    parts.clear()
                    size = 0
            if size:
                yield b"".join(parts)
        except (poplib.error_proto, OSError) as e:
            raise self._failure(e, what) from e
        finally:
            if answering and (not body.finished or body.after):
                self._pace.broken = True  # answers and commands no longer line up

    def _failure(self, error: Exception, doing: str) -> MailferryError:
        return pop3_failure(error, doing=doing, server=str(self._client.host), mailbox=self._address)

    def dele(self, number: int) -> None:
        """Mark message ``number`` deleted; only the QUIT that ends the session removes it."""
        self.commands += 1
        what = f"DELE {number}"
        try:
            _command(self._client, self._pace, what)
        except (poplib.error_proto, OSError) as e:
            raise self._failure(e, what) from e


def _command(client: poplib.POP3, pace: Pace, line: str) -> bytes:
    """Send one line and read the one-line answer (``+OK``, or a ``+`` continuation).

    Written on poplib's public socket and file: its own helpers are private.
    """
    pace.new_answer()
    client.sock.sendall(line.encode("ascii") + b"\r\n")
    answer = client.file.readline(_MAX_ANSWER)
    if not answer:
        raise ServerClosedConnection("the server closed the connection")
    answer = answer.rstrip(b"\r\n")
    if not answer.startswith(b"+"):
        raise poplib.error_proto(answer)
    return answer

