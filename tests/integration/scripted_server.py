"""A tiny mail server on a real TLS socket that plays a fixed script on each connection.

For the faults Dovecot will not produce: a connection closed during AUTHENTICATE, and
Exchange's throttling answers (tagged NO/BAD or untagged BYE with "Suggested Backoff Time").
It listens on 127.0.0.1 on a free port with the local stack's certificate, serves each
connection on its own thread, and every socket has a timeout so a test cannot hang.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from types import TracebackType

from devstack.ca import CertFiles

THROTTLED = b"Request is throttled. Suggested Backoff Time: 299961 milliseconds"


class Connection:
    """One accepted client, line by line."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self._tls = tls
        self._reader = tls.makefile("rb")

    def send(self, data: bytes) -> None:
        self._tls.sendall(data)

    def read_line(self) -> bytes:
        """The next line from the client; b"" when it closed."""
        return self._reader.readline(65536)


Script = Callable[[Connection], None]


class ScriptedServer:
    """Plays ``script`` on every connection; the connection is closed when the script returns."""

    def __init__(self, certs: CertFiles, script: Script, *, timeout: float = 10.0) -> None:
        self._script = script
        self._timeout = timeout
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(certs.server_cert), str(certs.server_key))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> ScriptedServer:
        accepting = threading.Thread(target=self._accept, name="scripted-accept", daemon=True)
        accepting.start()
        self._threads.append(accepting)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(self._timeout)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            serving = threading.Thread(target=self._serve, args=(raw,), name="scripted-conn",
                                       daemon=True)
            serving.start()
            self._threads.append(serving)

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(self._timeout)
        try:
            with self._context.wrap_socket(raw, server_side=True) as tls:
                self._script(Connection(tls))
        except OSError:
            pass  # a probe that only connects, or a client that gave up: nothing to play
        finally:
            raw.close()


def imap_script(on_authenticate: Callable[[Connection, bytes], None], *,
                capabilities: bytes = b"IMAP4rev1 AUTH=XOAUTH2 SASL-IR") -> Script:
    """An IMAP server that hands AUTHENTICATE (and its tag) to ``on_authenticate``."""

    def play(client: Connection) -> None:
        client.send(b"* OK IMAP4rev1 scripted server ready\r\n")
        while line := client.read_line():
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            command = rest.split(b" ", 1)[0].upper()
            if command == b"CAPABILITY":
                client.send(b"* CAPABILITY " + capabilities + b"\r\n"
                            + tag + b" OK CAPABILITY completed\r\n")
            elif command == b"AUTHENTICATE":
                on_authenticate(client, tag)
                return
            elif command == b"LOGOUT":
                client.send(b"* BYE logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
                return
            else:
                client.send(tag + b" BAD not in this script\r\n")

    return play


def pop3_script(on_auth: Callable[[Connection], None]) -> Script:
    """A POP3 server that hands ``AUTH XOAUTH2`` to ``on_auth``."""

    def play(client: Connection) -> None:
        client.send(b"+OK POP3 scripted server ready\r\n")
        while line := client.read_line():
            command = line.strip().upper()
            if command == b"AUTH XOAUTH2":
                on_auth(client)
                return
            if command == b"QUIT":
                client.send(b"+OK bye\r\n")
                return
            client.send(b"-ERR not in this script\r\n")

    return play
