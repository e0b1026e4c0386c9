"""POP3 over TLS with SASL XOAUTH2, through the standard library's poplib.

Exchange Online's POP3 has no SASL-IR: the client sends ``AUTH XOAUTH2``, waits for ``+``,
then sends the base64 string. Messages are read raw (see ``Pop3Session.retrieve``) because
poplib's line reader drops line-end information and refuses lines over 2048 bytes.
Nothing is ever deleted: the session ends with QUIT and no DELE.
"""

from __future__ import annotations

import base64
import poplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from shared.adapters.imap import xoauth2_string
from shared.errors import AuthenticationError, MailboxAccessError, MailServerError
from shared.model import Secret

_MAX_ANSWER = 8192  # one status line; a JSON challenge is far shorter

AUTH_FAILED_HINT = (
    "Exchange gives this one answer for several causes; most likely: the service principal "
    "was registered in Exchange with the App Registration's object ID instead of the "
    "Enterprise Application's (New-ServicePrincipal), the app has no FullAccess on this "
    "mailbox (Add-MailboxPermission), the permission is delegated instead of application "
    "POP.AccessAsApp with admin consent, or POP is disabled on the mailbox (Set-CASMailbox "
    "-PopEnabled $true). A valid token has aud https://outlook.office365.com and the role "
    "POP.AccessAsApp."
)
NOT_CONNECTED_HINT = (
    "The token was accepted but this mailbox is not open to the app: grant it with "
    "Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights "
    "FullAccess, and for a shared mailbox use the shared mailbox's own address."
)


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
        """A logged-in session for ``address``; ended with QUIT (never DELE) when the block ends."""
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
        except ssl.SSLCertVerificationError as e:
            raise MailServerError(
                f"TLS to {where} failed: the server's certificate is not trusted "
                f"({e.verify_message}). Check POP3_HOST, or CA_BUNDLE for a private CA."
            ) from e
        except ssl.SSLError as e:
            raise MailServerError(
                f"TLS to {where} failed ({e.reason}). Check POP3_PORT and POP3_SECURITY "
                "(implicit TLS on 995, starttls on 110)."
            ) from e
        except TimeoutError as e:
            raise MailServerError(f"Timed out connecting to POP3 server {where}.") from e
        except OSError as e:
            raise MailServerError(
                f"Could not connect to POP3 server {where}: {e.strerror or e}. "
                "Check POP3_HOST and POP3_PORT and outbound access to that port."
            ) from e
        except poplib.error_proto as e:
            raise MailServerError(
                f"POP3 server {where} failed during connect: {_server_text(e)}") from e
        return client

    def _login(self, client: poplib.POP3, address: str, token: Secret) -> None:
        try:
            answer = _command(client, "AUTH XOAUTH2")
        except poplib.error_proto as e:
            raise AuthenticationError(
                f"POP3 server {self.host} does not accept AUTH XOAUTH2 ({_server_text(e)}). "
                "Check POP3_HOST."
            ) from e
        except OSError as e:
            raise MailServerError(f"POP3 server {self.host} failed during login: {e}") from e
        if not answer.startswith(b"+ ") and answer != b"+":
            raise AuthenticationError(
                f"POP3 server {self.host} answered AUTH XOAUTH2 with "
                f"'{_server_text(answer)}' instead of '+'. Check POP3_HOST."
            )
        try:
            answer = _command(client, base64.b64encode(xoauth2_string(address, token)).decode())
            if not answer.startswith(b"+OK"):
                # A JSON challenge saying why; the server wants an empty line, then says -ERR.
                answer = _command(client, "")
        except poplib.error_proto as e:
            text = _server_text(e)
            if "not connected" in text.lower():
                raise MailboxAccessError(f"{address}: {text} {NOT_CONNECTED_HINT}") from e
            raise AuthenticationError(
                f"{address}: the POP3 server refused the app's token ({text}). {AUTH_FAILED_HINT}"
            ) from e
        except OSError as e:
            raise MailServerError(f"POP3 server {self.host} failed during login: {e}") from e
        if not answer.startswith(b"+OK"):
            raise AuthenticationError(
                f"{address}: the POP3 server did not complete the login "
                f"('{_server_text(answer)}'). {AUTH_FAILED_HINT}"
            )


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
        except poplib.error_proto as e:
            raise MailServerError(f"{self._address}: UIDL failed: {_server_text(e)}") from e
        except TimeoutError as e:
            raise MailServerError(f"{self._address}: timed out during UIDL.") from e
        except OSError as e:
            raise MailServerError(f"{self._address}: network error during UIDL: {e}") from e
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
        except poplib.error_proto as e:
            raise MailServerError(f"{self._address}: {what} failed: {_server_text(e)}") from e
        except TimeoutError as e:
            raise MailServerError(f"{self._address}: timed out during {what}.") from e
        except OSError as e:
            raise MailServerError(f"{self._address}: network error during {what}: {e}") from e


def _read_multiline(readline: Callable[[], bytes]) -> bytes:
    """The body of a multi-line answer, up to the terminating ``.`` line."""
    parts: list[bytes] = []
    while True:
        line = readline()
        if not line:
            raise poplib.error_proto("-ERR connection closed in the middle of a message")
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
        raise poplib.error_proto("-ERR the server closed the connection")
    answer = answer.rstrip(b"\r\n")
    if not answer.startswith(b"+"):
        raise poplib.error_proto(answer)
    return answer


def _server_text(error: Exception | bytes) -> str:
    value = error.args[0] if isinstance(error, Exception) and error.args else error
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.strip()[:300]
