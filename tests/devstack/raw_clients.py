"""Clients for the fault fronts' tests: raw TLS sockets to check exact bytes, and logged-in
imaplib/poplib sessions through a front."""

from __future__ import annotations

import base64
import imaplib
import poplib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

from devstack.stack import Stack

LOOPBACK = "127.0.0.1"


class RawTls:
    """A TLS connection read line by line, for the exact bytes a front sends."""

    def __init__(self, stack: Stack, port: int, timeout: float = 15.0) -> None:
        raw = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.sock: ssl.SSLSocket = stack.ssl_context().wrap_socket(
            raw, server_hostname=LOOPBACK, suppress_ragged_eofs=False)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """One line with its CRLF; b"" once the front has closed."""
        return self.file.readline()

    def exactly(self, size: int) -> bytes:
        return self.file.read(size)

    def rest(self) -> bytes:
        """Everything until the front closes."""
        return self.file.read()

    def ends_with_reset(self) -> bool:
        """Read the TCP stream under TLS to its end: True for an RST, False for a FIN.

        (Python's ssl reports an RST as a ragged EOF, so the bytes are read beneath it.)
        """
        try:
            while socket.socket.recv(self.sock, 65536):
                pass
        except ConnectionResetError:
            return True
        return False

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    @contextmanager
    def closed_on_failure(self) -> Iterator[RawTls]:
        """Closes the connection if the block fails: a failed login must not leave its socket
        for a later test to trip on."""
        try:
            yield self
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RawTls:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sasl_ir(stack: Stack, address: str) -> bytes:
    """The base64 XOAUTH2 initial response for ``address`` with a valid token."""
    return base64.b64encode(stack.xoauth2(address, stack.issue_token()))


def raw_imap_login(stack: Stack, port: int, address: str) -> RawTls:
    """A raw IMAP connection through a front, logged in with SASL-IR."""
    conn = RawTls(stack, port)
    with conn.closed_on_failure():
        assert conn.line().startswith(b"* OK ")
        conn.send(b"a1 AUTHENTICATE XOAUTH2 " + sasl_ir(stack, address) + b"\r\n")
        answer = conn.line()
        assert answer.startswith(b"a1 OK"), answer
    return conn


def imap_login(stack: Stack, port: int, address: str, *, timeout: float = 15.0) -> imaplib.IMAP4_SSL:
    """An imaplib session through a front (AUTHENTICATE without SASL-IR, as imaplib does)."""
    conn = imaplib.IMAP4_SSL(LOOPBACK, port, ssl_context=stack.ssl_context(), timeout=timeout)
    answers = iter([stack.xoauth2(address, stack.issue_token())])
    try:
        conn.authenticate("XOAUTH2", lambda _: next(answers, b""))
    except BaseException:
        conn.shutdown()
        raise
    return conn


def fetch_all(conn: imaplib.IMAP4_SSL) -> dict[int, bytes]:
    """UID → bytes of every message in INBOX, fetched through ``conn``."""
    conn.select("INBOX", readonly=True)
    typ, data = conn.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    assert typ == "OK", data
    found = {}
    for item in data:
        if isinstance(item, tuple):
            match = re.search(rb"UID (\d+)", item[0])
            assert match is not None
            found[int(match.group(1))] = item[1]
    return found


def pop3_login(stack: Stack, port: int, address: str, *, timeout: float = 15.0) -> poplib.POP3_SSL:
    """A poplib session through a front: ``AUTH XOAUTH2``, ``+``, then the base64 string."""
    conn = poplib.POP3_SSL(LOOPBACK, port, context=stack.ssl_context(), timeout=timeout)
    try:
        for line in (b"AUTH XOAUTH2", sasl_ir(stack, address)):
            conn.sock.sendall(line + b"\r\n")  # poplib's own command helpers are private
            answer = conn.file.readline()
            if not answer.startswith(b"+"):
                raise poplib.error_proto(answer.rstrip(b"\r\n"))
    except BaseException:
        conn.close()
        raise
    return conn


def message(n: int, *, lines: int = 40) -> bytes:
    """A plain message of about ``lines`` times 71 bytes."""
    msg = EmailMessage()
    msg["From"] = "sender@fabrikam.com"
    msg["To"] = "ops@contoso.com"
    msg["Subject"] = f"message {n}"
    msg["Message-ID"] = f"<{n}.{time.time_ns()}@fabrikam.com>"
    msg.set_content(("y" * 70 + "\n") * lines)
    return msg.as_bytes().replace(b"\n", b"\r\n")
