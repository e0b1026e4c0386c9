"""IMAP over TLS with SASL XOAUTH2, through IMAPClient (which handles quoting, modified
UTF-7 folder names and response parsing)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from shared.errors import (
    AuthenticationError,
    FolderUnavailable,
    MailboxAccessError,
    MailServerError,
)
from shared.model import FetchedMessage, FolderState, MessageInfo, Secret

log = logging.getLogger("mailferry.imap")

INFO_CHUNK = 1000

AUTH_FAILED_HINT = (
    "Exchange gives this one answer for several causes; most likely: the service principal "
    "was registered in Exchange with the App Registration's object ID instead of the "
    "Enterprise Application's (New-ServicePrincipal), the app has no FullAccess on this "
    "mailbox (Add-MailboxPermission), the permission is delegated instead of application "
    "IMAP.AccessAsApp with admin consent, or IMAP is disabled on the mailbox (Set-CASMailbox "
    "-ImapEnabled $true). A valid token has aud https://outlook.office365.com and the role "
    "IMAP.AccessAsApp."
)
NOT_CONNECTED_HINT = (
    "The token was accepted but this mailbox is not open to the app: grant it with "
    "Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights "
    "FullAccess, and for a shared mailbox use the shared mailbox's own address."
)


def xoauth2_string(address: str, token: Secret) -> bytes:
    """The SASL XOAUTH2 initial response (never logged)."""
    return f"user={address}\x01auth=Bearer {token.reveal()}\x01\x01".encode()


class _XOAuth2:
    """SASL XOAUTH2: the string first; on failure the server sends a JSON challenge and
    waits for an empty answer before it says NO."""

    def __init__(self, address: str, token: Secret) -> None:
        self._first = xoauth2_string(address, token)
        self._sent = False

    def __call__(self, challenge: bytes) -> bytes:
        if self._sent:
            return b""
        self._sent = True
        return self._first


class ImapServer:
    """Opens XOAUTH2 sessions to one IMAP server."""

    def __init__(self, host: str, port: int, *, security: Literal["tls", "starttls"] = "tls",
                 ca_bundle: Path | None = None, timeout: float = 60.0) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)

    @contextmanager
    def open(self, address: str, token: Secret) -> Iterator[ImapSession]:
        """A logged-in session for ``address``; logged out when the block ends."""
        client = self._connect()
        try:
            self._login(client, address, token)
            yield ImapSession(client, address)
        finally:
            try:
                client.logout()
            except (IMAPClientError, OSError):
                client.shutdown()

    def _connect(self) -> IMAPClient:
        where = f"{self.host}:{self.port}"
        try:
            client = IMAPClient(self.host, self.port, ssl=self.security == "tls",
                                ssl_context=self._context, timeout=self.timeout)
            # IMAPClient turns imaplib's debug output up to 5, and imaplib then formats the
            # repr of every message it receives for a log line, whether or not the logger
            # wants it: most of a large fetch's CPU. IMAPClient's own DEBUG log remains.
            client._imap.debug = 0
            if self.security == "starttls":
                client.starttls(self._context)
        except ssl.SSLCertVerificationError as e:
            raise MailServerError(
                f"TLS to {where} failed: the server's certificate is not trusted "
                f"({e.verify_message}). Check IMAP_HOST, or CA_BUNDLE for a private CA."
            ) from e
        except ssl.SSLError as e:
            raise MailServerError(
                f"TLS to {where} failed ({e.reason}). Check IMAP_PORT and IMAP_SECURITY "
                "(implicit TLS on 993, starttls on 143)."
            ) from e
        except TimeoutError as e:
            raise MailServerError(f"Timed out connecting to IMAP server {where}.") from e
        except OSError as e:
            raise MailServerError(
                f"Could not connect to IMAP server {where}: {e.strerror or e}. "
                "Check IMAP_HOST and IMAP_PORT and outbound access to that port."
            ) from e
        except IMAPClientError as e:
            raise MailServerError(f"IMAP server {where} failed during connect: {e}") from e
        return client

    def _login(self, client: IMAPClient, address: str, token: Secret) -> None:
        try:
            capabilities = client.capabilities()
        except (IMAPClientError, OSError) as e:
            raise MailServerError(f"IMAP server {self.host} failed on CAPABILITY: {e}") from e
        if b"AUTH=XOAUTH2" not in capabilities:
            offered = b" ".join(c for c in capabilities if c.startswith(b"AUTH=")).decode()
            raise AuthenticationError(
                f"IMAP server {self.host} does not offer XOAUTH2 (offers: {offered or 'none'}). "
                "Check IMAP_HOST."
            )
        try:
            client.sasl_login("XOAUTH2", _XOAuth2(address, token))
        except IMAPClientAbortError as e:
            raise MailServerError(f"IMAP server {self.host} closed the connection: {e}") from e
        except IMAPClientError as e:
            text = _server_text(e)
            if "not connected" in text.lower():
                raise MailboxAccessError(f"{address}: {text} {NOT_CONNECTED_HINT}") from e
            raise AuthenticationError(
                f"{address}: the IMAP server refused the app's token ({text}). {AUTH_FAILED_HINT}"
            ) from e
        except OSError as e:
            raise MailServerError(f"IMAP server {self.host} failed during login: {e}") from e


class ImapProbe:
    """One step at a time through what ``ImapServer.open`` does, for diagnostics."""

    def __init__(self, server: ImapServer) -> None:
        self._server = server
        self._client: IMAPClient | None = None

    def connect(self) -> list[str]:
        """Connect (TLS or STARTTLS) and return the capabilities offered before login."""
        self._client = self._server._connect()
        try:
            return sorted(c.decode() for c in self._client.capabilities())
        except (IMAPClientError, OSError) as e:
            raise MailServerError(f"IMAP server {self._server.host} failed on CAPABILITY: {e}") from e

    def login(self, address: str, token: Secret) -> None:
        assert self._client is not None, "connect first"
        self._server._login(self._client, address, token)

    def folders(self) -> list[str]:
        """Every folder the mailbox lists (LIST), by name."""
        assert self._client is not None, "connect first"
        try:
            return sorted(str(name) for _, _, name in self._client.list_folders())
        except (IMAPClientError, OSError) as e:
            raise MailServerError(f"LIST failed: {_server_text(e)}") from e

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.logout()
            except (IMAPClientError, OSError):
                self._client.shutdown()
            self._client = None


class ImapSession:
    """A logged-in IMAP connection to one mailbox."""

    def __init__(self, client: IMAPClient, address: str) -> None:
        self._client = client
        self._address = address
        self.commands = 0

    def select_folder(self, folder: str) -> FolderState:
        try:
            info = self._call(f"EXAMINE {folder}", self._client.select_folder, folder, readonly=True)
        except MailServerError as e:
            # A tagged NO/BAD to EXAMINE is about this folder; the session itself is fine.
            # A dropped connection, a timeout or throttling concerns the whole mailbox.
            cause = e.__cause__
            if (isinstance(cause, IMAPClientError) and not isinstance(cause, IMAPClientAbortError)
                    and "throttled" not in str(cause).lower()):
                raise FolderUnavailable(str(e)) from cause
            raise
        if b"UIDVALIDITY" not in info:
            raise MailServerError(f"{self._address}/{folder}: the server sent no UIDVALIDITY.")
        uidnext = info.get(b"UIDNEXT")
        return FolderState(int(info[b"UIDVALIDITY"]),
                           int(uidnext) if uidnext is not None else None,
                           int(info.get(b"EXISTS", 0)))

    def search_uids_from(self, first_uid: int) -> list[int]:
        found = self._call("UID SEARCH", self._client.search, ["UID", f"{first_uid}:*"])
        return [int(u) for u in found]

    def fetch(self, uids: Sequence[int]) -> list[FetchedMessage]:
        if not uids:
            return []
        response: dict[int, dict[bytes, Any]] = self._call(
            "UID FETCH", self._client.fetch, list(uids), ["BODY.PEEK[]", "INTERNALDATE"])
        messages = []
        for uid, data in response.items():
            raw = data.get(b"BODY[]")
            if raw is None:
                continue  # an untagged FETCH for flags only, or a message expunged meanwhile
            internal = data.get(b"INTERNALDATE")
            messages.append(FetchedMessage(int(uid), bytes(raw),
                                           internal if isinstance(internal, datetime) else None))
        return sorted(messages, key=lambda m: m.uid)

    def fetch_info(self, uids: Sequence[int]) -> list[MessageInfo]:
        infos: list[MessageInfo] = []
        # Chunked so a first run over a large folder does not send one huge command line.
        for start in range(0, len(uids), INFO_CHUNK):
            chunk = list(uids[start:start + INFO_CHUNK])
            response: dict[int, dict[bytes, Any]] = self._call(
                "UID FETCH", self._client.fetch, chunk, ["RFC822.SIZE", "INTERNALDATE"])
            for uid, data in response.items():
                internal = data.get(b"INTERNALDATE")
                infos.append(MessageInfo(int(uid), int(data.get(b"RFC822.SIZE", 0)),
                                         internal if isinstance(internal, datetime) else None))
        return sorted(infos, key=lambda i: i.uid)

    def fetch_range(self, uid: int, offset: int, length: int) -> bytes | None:
        response: dict[int, dict[bytes, Any]] = self._call(
            "UID FETCH", self._client.fetch, [uid], [f"BODY.PEEK[]<{offset}.{length}>"])
        for key, value in response.get(uid, {}).items():
            if key.startswith(b"BODY[]"):
                # NIL is what Dovecot sends once another session expunged the message.
                return None if value is None else bytes(value)
        return None  # no FETCH data: the message is gone

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        self.commands += 1
        try:
            return method(*args, **kwargs)
        except IMAPClientAbortError as e:
            raise MailServerError(f"{self._address}: connection lost during {what}: {e}") from e
        except IMAPClientError as e:
            text = _server_text(e)
            if what.startswith("EXAMINE") and "exist" in text.lower():
                raise MailServerError(
                    f"{self._address}: {what} failed: the folder does not exist ({text}). "
                    "Check the folder names in MAILBOXES."
                ) from e
            raise MailServerError(f"{self._address}: {what} failed: {text}") from e
        except TimeoutError as e:
            raise MailServerError(f"{self._address}: timed out during {what}.") from e
        except OSError as e:
            raise MailServerError(f"{self._address}: network error during {what}: {e}") from e


def _server_text(error: Exception) -> str:
    text = str(error)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text.strip()[:300]
