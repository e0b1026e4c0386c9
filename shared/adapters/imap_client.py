"""IMAPClient whose imaplib connection reads every answer through a paced file
(``mail_socket``): imaplib reads only through ``read()`` and ``readline()``."""

from __future__ import annotations

import imaplib
import io
import socket
import ssl

from imapclient import IMAPClient
from imapclient.imap4 import IMAP4WithTimeout
from imapclient.tls import IMAP4_TLS

from shared.adapters.mail_socket import Pace, paced_file


class _PacedReads:
    """Mixed into imaplib's IMAP4 classes: answers come through a paced file of the current
    socket (a new one after STARTTLS)."""

    pace: Pace
    sock: socket.socket
    _paced: tuple[socket.socket, io.BufferedReader] | None = None

    def _answers(self) -> io.BufferedReader:
        if self._paced is None or self._paced[0] is not self.sock:
            self._paced = (self.sock, paced_file(self.sock, self.pace))
        return self._paced[1]

    def read(self, size: int) -> bytes:
        return self._answers().read(size)

    def readline(self) -> bytes:
        limit = imaplib._MAXLINE  # type: ignore[attr-defined]
        line = self._answers().readline(limit + 1)
        if len(line) > limit:
            raise imaplib.IMAP4.error(f"got more than {limit} bytes")
        return line


class _PacedTls(_PacedReads, IMAP4_TLS):  # type: ignore[misc]
    def __init__(self, host: str, port: int, context: ssl.SSLContext, pace: Pace) -> None:
        self.pace = pace
        super().__init__(host, port, context, pace.connect_timeout())


class _PacedPlain(_PacedReads, IMAP4WithTimeout):  # type: ignore[misc]
    def __init__(self, host: str, port: int, pace: Pace) -> None:
        self.pace = pace
        super().__init__(host, port, pace.connect_timeout())


class PacedImapClient(IMAPClient):  # type: ignore[misc]
    """IMAPClient over a connection read within ``pace``, from the greeting on."""

    def __init__(self, host: str, port: int, *, tls: bool, ssl_context: ssl.SSLContext,
                 pace: Pace) -> None:
        self.pace = pace
        super().__init__(host, port, ssl=tls, ssl_context=ssl_context, timeout=pace.connect_timeout())
        # IMAPClient turns imaplib's debug output up to 5, and imaplib then formats the
        # repr of every message it receives for a log line, whether or not the logger
        # wants it: most of a large fetch's CPU. IMAPClient's own DEBUG log remains.
        self._imap.debug = 0

    def _create_IMAP4(self) -> imaplib.IMAP4:  # noqa: N802 - IMAPClient's name
        if self.ssl:
            return _PacedTls(self.host, self.port, self.ssl_context, self.pace)
        return _PacedPlain(self.host, self.port, self.pace)
