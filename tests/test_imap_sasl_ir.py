"""AUTHENTICATE with the initial response on the command line, over a loopback socket to a
peer that answers as Dovecot and Exchange do. It leans on imaplib's internals
(``_new_tag``, ``_get_response``, ``_command_complete``): these tests run under every
supported Python, so a release that changes them fails here, not in production."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from shared.adapters.imap_client import PacedImapClient, authenticate_at_once
from shared.adapters.mail_socket import Pace

INITIAL = b"user=ops@contoso.com\x01auth=Bearer not-a-real-token\x01\x01"


class Wire:
    """The peer's end of one connection: every line the client sent is kept."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self.lines: list[bytes] = []

    def send(self, data: bytes) -> None:
        self._conn.sendall(data)

    def line(self) -> bytes:
        """The client's next line; what came before the close if it closed."""
        line = b""
        while not line.endswith(b"\r\n"):
            byte = self._conn.recv(1)
            if not byte:
                break
            line += byte
        self.lines.append(line)
        return line


Script = Callable[[Wire], None]


class LoopbackPeer:
    """Accepts one connection on 127.0.0.1, answers imaplib's first CAPABILITY with SASL-IR,
    then plays ``script``; every socket has a timeout, so a test cannot hang."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.port: int = self._listener.getsockname()[1]
        self.wire: Wire | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            conn.settimeout(10)
            self.wire = Wire(conn)
            self.wire.send(b"* OK ready\r\n")
            tag = self.wire.line().split(b" ", 1)[0]  # imaplib asks at once
            self.wire.send(b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2\r\n" + tag + b" OK done\r\n")
            self._script(self.wire)

    def close(self) -> None:
        self._thread.join(10)
        self._listener.close()


@pytest.fixture
def connect() -> Iterator[Callable[[Script], tuple[PacedImapClient, LoopbackPeer]]]:
    opened: list[tuple[PacedImapClient, LoopbackPeer]] = []

    def connect_to(script: Script) -> tuple[PacedImapClient, LoopbackPeer]:
        peer = LoopbackPeer(script)
        client = PacedImapClient("127.0.0.1", peer.port, tls=False,
                                 ssl_context=ssl.create_default_context(), pace=Pace(10))
        opened.append((client, peer))
        return client, peer

    yield connect_to
    for client, peer in opened:
        client.shutdown()
        peer.close()


def accepting(wire: Wire) -> None:
    tag = wire.line().split(b" ", 1)[0]
    wire.send(tag + b" OK [CAPABILITY IMAP4rev1 MOVE] Logged in\r\n")
    wire.line()  # holds the connection until the client closes it


def refusing(wire: Wire) -> None:
    tag = wire.line().split(b" ", 1)[0]
    wire.send(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n")  # Dovecot's JSON challenge
    if wire.line() == b"\r\n":  # only the empty answer gets the NO
        wire.send(tag + b" NO AUTHENTICATE failed.\r\n")


def throttling_with_bye(wire: Wire) -> None:
    wire.line()
    wire.send(b"* BYE Request is throttled. Suggested Backoff Time: 5000 milliseconds\r\n")


def test_the_initial_response_goes_on_the_command_line_and_the_session_is_logged_in(connect):
    client, peer = connect(accepting)
    authenticate_at_once(client, "XOAUTH2", INITIAL)
    assert client._imap.state == "AUTH"
    command = peer.wire.lines[1]
    assert command.endswith(b"\r\n")
    _, verb, mechanism, initial = command[:-2].split(b" ")
    assert (verb, mechanism, base64.b64decode(initial)) == (b"AUTHENTICATE", b"XOAUTH2", INITIAL)
    # What the OK carried is known without another CAPABILITY.
    assert b"MOVE" in client.capabilities()
    # imaplib's history of the commands it formats never held the token.
    history = getattr(client._imap, "_cmd_log", {})
    assert not any(initial in repr(entry).encode() for entry in history.values())


def test_a_refusal_answers_the_challenge_with_an_empty_line_and_raises_the_servers_words(connect):
    client, peer = connect(refusing)
    with pytest.raises(IMAPClientError, match=r"^AUTHENTICATE failed\.$"):
        authenticate_at_once(client, "XOAUTH2", INITIAL)
    assert peer.wire.lines[2] == b"\r\n"
    assert client._imap.state == "NONAUTH"


def test_an_untagged_bye_then_a_close_is_an_abort_and_the_bye_is_kept(connect):
    client, _ = connect(throttling_with_bye)
    with pytest.raises(IMAPClientAbortError):
        authenticate_at_once(client, "XOAUTH2", INITIAL)
    said = client._imap.untagged_responses.get("BYE")
    assert said and b"Suggested Backoff Time: 5000" in said[-1]
