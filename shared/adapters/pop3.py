"""POP3 over TLS with SASL XOAUTH2, through the standard library's poplib.

Exchange Online's POP3 has no SASL-IR: the client sends ``AUTH XOAUTH2``, waits for ``+``,
then sends the base64 string. Messages are read raw (see ``Pop3Session.retrieve``) because
poplib's line reader drops line-end information and refuses lines over 2048 bytes.
Nothing is deleted unless AFTER_DELIVERY is ``delete`` (``Pop3Session.dele``, committed by
the QUIT that ends the session).
"""

from __future__ import annotations

import base64
import poplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from shared.adapters.pop3_failures import AUTH, LOGIN, ServerClosedConnection, pop3_failure
from shared.adapters.sasl import xoauth2_string
from shared.errors import MailferryError, MailServerError
from shared.model import Secret

_MAX_ANSWER = 8192  # one status line; a JSON challenge is far shorter


class Pop3MailServer:
    """Opens XOAUTH2 sessions to one POP3 server."""

    def __init__(self, host: str, port: int, *, security: Literal["tls", "starttls"] = "tls",
                 ca_bundle: Path | None = None, timeout: float = 60.0) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)

    @contextmanager
    def open(self, address: str, token: Secret) -> Iterator[Pop3Session]:
        """A logged-in session for ``address``; ended with QUIT when the block ends."""
        client = self._connect()
        try:
            self._login(client, address, token)
            yield Pop3Session(client, address)
        finally:
            try:
                client.quit()
            except (poplib.error_proto, OSError):
                client.close()

    def _connect(self) -> poplib.POP3:
        where = f"{self.host}:{self.port}"
        try:
            client: poplib.POP3
            if self.security == "tls":
                client = poplib.POP3_SSL(self.host, self.port, context=self._context,
                                         timeout=self.timeout)
            else:
                client = poplib.POP3(self.host, self.port, timeout=self.timeout)
                client.stls(self._context)
        except (poplib.error_proto, OSError) as e:
            raise pop3_failure(e, doing="connect", server=where) from e
        return client

    def _login(self, client: poplib.POP3, address: str, token: Secret) -> None:
        doing = AUTH
        try:
            answer = _command(client, "AUTH XOAUTH2")
            if answer != b"+" and not answer.startswith(b"+ "):
                raise poplib.error_proto(answer)  # "+OK" is no continuation: not taken
            doing = LOGIN
            answer = _command(client, base64.b64encode(xoauth2_string(address, token)).decode())
            if not answer.startswith(b"+OK"):
                # A JSON challenge saying why; the server wants an empty line, then says -ERR.
                answer = _command(client, "")
            if not answer.startswith(b"+OK"):
                raise poplib.error_proto(answer)
        except (poplib.error_proto, OSError) as e:
            raise pop3_failure(e, doing=doing, server=self.host, mailbox=address) from e


class Pop3Session:
    """A logged-in POP3 connection to one mailbox's Inbox."""

    def __init__(self, client: poplib.POP3, address: str) -> None:
        self._client = client
        self._address = address
        self.commands = 0

    def list_uidls(self) -> list[tuple[int, str]]:
        self.commands += 1
        try:
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
        self.commands += 1
        what = f"RETR {number}"
        try:
            _command(self._client, what)  # raises on -ERR
            return _read_multiline(self._client.file.readline)
        except (poplib.error_proto, OSError) as e:
            raise self._failure(e, what) from e

    def _failure(self, error: Exception, doing: str) -> MailferryError:
        return pop3_failure(error, doing=doing, server=str(self._client.host), mailbox=self._address)

    def dele(self, number: int) -> None:
        """Mark message ``number`` deleted; only the QUIT that ends the session removes it."""
        self.commands += 1
        what = f"DELE {number}"
        try:
            _command(self._client, what)
        except (poplib.error_proto, OSError) as e:
            raise self._failure(e, what) from e


def _read_multiline(readline: Callable[[], bytes]) -> bytes:
    """The body of a multi-line answer, up to the terminating ``.`` line."""
    parts: list[bytes] = []
    while True:
        line = readline()
        if not line:
            raise ServerClosedConnection("the server closed the connection in the middle of a message")
        if line in (b".\r\n", b".\n"):
            return b"".join(parts)
        # RFC 1939: a line starting with the termination octet has had one prepended.
        parts.append(line[1:] if line.startswith(b".") else line)


def _command(client: poplib.POP3, line: str) -> bytes:
    """Send one line and read the one-line answer (``+OK``, or a ``+`` continuation).

    Written on poplib's public socket and file: its own helpers are private.
    """
    client.sock.sendall(line.encode("ascii") + b"\r\n")
    answer = client.file.readline(_MAX_ANSWER)
    if not answer:
        raise ServerClosedConnection("the server closed the connection")
    answer = answer.rstrip(b"\r\n")
    if not answer.startswith(b"+"):
        raise poplib.error_proto(answer)
    return answer

