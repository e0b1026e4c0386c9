"""IMAP over TLS with SASL XOAUTH2, through IMAPClient (which handles quoting, modified
UTF-7 folder names and response parsing); every read paced (``mail_socket``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator, Iterator, Sequence
from datetime import date, datetime
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from shared.adapters.imap_body import fetch_body_pieces
from shared.adapters.imap_client import PacedImapClient, authenticate_at_once, stream_fetch, uid_search
from shared.adapters.imap_failures import AUTHENTICATE, imap_failure, last_bye, no_xoauth2
from shared.adapters.mail_server import MailConnector
from shared.adapters.mail_socket import Pace
from shared.adapters.sasl import xoauth2_string
from shared.errors import ActionUnavailable, FolderUnavailable, MailferryError, MailServerError
from shared.folder_patterns import ListedFolder
from shared.model import FetchedMessage, FolderState, MessageInfo, Secret

log = logging.getLogger("mailferry.imap")

INFO_CHUNK = 1000


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


class ImapServer(MailConnector[IMAPClient, "ImapSession"]):
    """Opens XOAUTH2 sessions to one IMAP server."""

    library_errors = (IMAPClientError,)

    def _client(self, pace: Pace) -> IMAPClient:
        client = PacedImapClient(self.host, self.port, tls=self.security == "tls",
                                 ssl_context=self._context, pace=pace)
        if self.security == "starttls":
            client.starttls(self._context)
        return client

    def _login(self, client: IMAPClient, address: str, token: Secret, pace: Pace) -> None:
        try:
            pace.new_answer()
            capabilities = client.capabilities()
        except (IMAPClientError, OSError) as e:
            raise imap_failure(e, doing="CAPABILITY", server=self.host, mailbox=address,
                               bye=last_bye(client)) from e
        if b"AUTH=XOAUTH2" not in capabilities:
            raise no_xoauth2(self.host, [c.decode() for c in capabilities])
        try:
            pace.new_answer()
            if b"SASL-IR" in capabilities:  # Exchange Online offers it
                authenticate_at_once(client, "XOAUTH2", xoauth2_string(address, token))
            else:
                client.sasl_login("XOAUTH2", _XOAuth2(address, token))
        except (IMAPClientError, OSError) as e:
            raise imap_failure(e, doing=AUTHENTICATE, server=self.host, mailbox=address,
                               bye=last_bye(client)) from e

    def _session(self, client: IMAPClient, address: str, pace: Pace) -> ImapSession:
        return ImapSession(client, address, pace)

    def _goodbye(self, client: IMAPClient) -> None:
        client.logout()

    def _drop(self, client: IMAPClient) -> None:
        with contextlib.suppress(IMAPClientError, OSError):  # already closed
            client.shutdown()

    def _failure(self, error: BaseException, doing: str, server: str) -> MailferryError:
        return imap_failure(error, doing=doing, server=server)


class ImapProbe:
    """One step at a time through what ``ImapServer.open`` does, for diagnostics."""

    def __init__(self, server: ImapServer) -> None:
        self._server = server
        self._pace = Pace(server.timeout)
        self._client: IMAPClient | None = None

    def connect(self) -> list[str]:
        """Connect (TLS or STARTTLS) and return the capabilities offered before login."""
        self._client = self._server._connect(self._pace)
        try:
            return sorted(c.decode() for c in self._client.capabilities())
        except (IMAPClientError, OSError) as e:
            raise imap_failure(e, doing="CAPABILITY", server=self._server.host,
                               bye=last_bye(self._client)) from e

    def login(self, address: str, token: Secret) -> None:
        assert self._client is not None, "connect first"
        self._server._login(self._client, address, token, self._pace)

    def folders(self) -> list[str]:
        """Every folder the mailbox lists (LIST), by name."""
        assert self._client is not None, "connect first"
        try:
            return sorted(str(name) for _, _, name in self._client.list_folders())
        except (IMAPClientError, OSError) as e:
            raise imap_failure(e, doing="LIST", server=self._server.host,
                               bye=last_bye(self._client)) from e

    def close(self) -> None:
        if self._client is not None:
            self._server._close(self._client, self._pace)
            self._client = None


class ImapSession:
    """A logged-in IMAP connection to one mailbox."""

    def __init__(self, client: IMAPClient, address: str, pace: Pace) -> None:
        self._client = client
        self._address = address
        self._pace = pace
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
        found: list[int] = self._call("UID SEARCH", uid_search, self._client, "UID", f"{first_uid}:*")
        return found

    def fetch(self, uids: Sequence[int]) -> Iterator[FetchedMessage]:
        """Each message as soon as its FETCH response is complete: when the connection drops,
        the messages received before are kept and only the one cut short is fetched again."""
        wanted = set(uids)
        self.commands += 1
        for uid, data in stream_fetch(self._client, self._pace, uids, "BODY.PEEK[] INTERNALDATE",
                                      failure=self._failure):
            raw = data.get(b"BODY[]")
            if raw is None or uid not in wanted:
                continue  # an untagged FETCH for flags only, or a message expunged meanwhile
            yield FetchedMessage(uid, bytes(raw), _internal_date(data))

    def fetch_info(self, uids: Sequence[int]) -> list[MessageInfo]:
        infos: list[MessageInfo] = []
        # Chunked so a first run over a large folder does not send one huge command line.
        for start in range(0, len(uids), INFO_CHUNK):
            chunk = list(uids[start:start + INFO_CHUNK])
            asked = set(chunk)
            self.commands += 1
            response: dict[int, dict[bytes, Any]] = {}
            for uid, data in stream_fetch(self._client, self._pace, chunk, "RFC822.SIZE INTERNALDATE",
                                          failure=self._failure):
                if uid in asked:  # unsolicited answers about other messages are dropped
                    response.setdefault(uid, {}).update(data)
            for uid, data in response.items():
                infos.append(MessageInfo(int(uid), int(data.get(b"RFC822.SIZE", 0)),
                                         _internal_date(data)))
        return sorted(infos, key=lambda i: i.uid)

    def fetch_pieces(self, uid: int, piece: int) -> Generator[bytes, None, None] | None:
        self.commands += 1
        return fetch_body_pieces(self._client, self._pace, uid, piece, failure=self._failure)

    def search_uids_since(self, day: date) -> list[int]:
        found: list[int] = self._call("UID SEARCH", uid_search, self._client, "SINCE", day)
        return found

    # -- after delivery (AFTER_DELIVERY other than keep) -----------------------------------
    def capabilities(self) -> frozenset[str]:
        # Asked now (one CAPABILITY), not the list cached at login: Exchange offers MOVE only
        # once logged in, and a list sent during login may predate it.
        _, data = self._call("CAPABILITY", self._client._imap.capability)
        words = b" ".join(bytes(d) for d in data if d).split()
        return frozenset(w.decode("ascii", "replace").upper() for w in words)

    def list_folders(self) -> list[ListedFolder]:
        listed = self._call("LIST", self._client.list_folders)
        return [ListedFolder(str(name), delimiter.decode() if isinstance(delimiter, bytes) else delimiter,
                             frozenset(bytes(f).decode("ascii", "replace") for f in flags))
                for flags, delimiter, name in listed]

    def select_folder_writable(self, folder: str) -> FolderState:
        info = self._changing(f"SELECT {folder}", self._client.select_folder, folder, readonly=False)
        if b"UIDVALIDITY" not in info:
            raise MailServerError(f"{self._address}/{folder}: the server sent no UIDVALIDITY.")
        uidnext = info.get(b"UIDNEXT")
        return FolderState(int(info[b"UIDVALIDITY"]), int(uidnext) if uidnext is not None else None,
                           int(info.get(b"EXISTS", 0)))

    def search_uids_between(self, first_uid: int, last_uid: int, *, unseen: bool = False) -> list[int]:
        if first_uid > last_uid:
            return []
        criteria = ["UID", f"{first_uid}:{last_uid}"] + (["UNSEEN"] if unseen else [])
        found = self._call("UID SEARCH", uid_search, self._client, *criteria)
        return sorted(int(u) for u in found if first_uid <= int(u) <= last_uid)

    def folder_status(self, folder: str) -> FolderState:
        info = self._changing(f"STATUS {folder}", self._client.folder_status, folder,
                              ["UIDVALIDITY", "UIDNEXT", "MESSAGES"])
        return FolderState(int(info[b"UIDVALIDITY"]), int(info[b"UIDNEXT"]), int(info.get(b"MESSAGES", 0)))

    def create_folder(self, folder: str) -> None:
        try:
            self._changing(f"CREATE {folder}", self._client.create_folder, folder)
        except ActionUnavailable:
            # Another run (or a person) may have created it meanwhile: that is what we wanted.
            if not self._call("LIST", self._client.folder_exists, folder):
                raise

    def uid_store_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        if uids:
            self._changing("UID STORE", self._client.add_flags, uid_set(uids), list(flags), silent=True)

    def uid_move(self, uids: Sequence[int], folder: str) -> None:
        if uids:
            self._changing("UID MOVE", self._client.move, uid_set(uids), folder)

    def uid_copy(self, uids: Sequence[int], folder: str) -> None:
        if uids:
            self._changing("UID COPY", self._client.copy, uid_set(uids), folder)

    def uid_expunge(self, uids: Sequence[int]) -> None:
        if uids:
            self._changing("UID EXPUNGE", self._client.uid_expunge, uid_set(uids))

    def _changing(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """A command of the after-delivery phase: a tagged NO or BAD to it (or a capability
        the server lacks) concerns this folder's action; a drop or throttling, the mailbox."""
        try:
            return self._call(what, method, *args, **kwargs)
        except MailServerError as e:
            cause = e.__cause__
            if (isinstance(cause, IMAPClientError) and not isinstance(cause, IMAPClientAbortError)
                    and "throttled" not in str(cause).lower()):
                raise ActionUnavailable(str(e)) from cause
            raise

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        self.commands += 1
        try:
            self._pace.new_answer()
            return method(*args, **kwargs)
        except (IMAPClientError, OSError) as e:
            raise self._failure(e, what) from e

    def _failure(self, error: BaseException, what: str) -> MailferryError:
        return imap_failure(error, doing=what, server=str(self._client.host), mailbox=self._address,
                            bye=last_bye(self._client))


def _internal_date(data: dict[bytes, Any]) -> datetime | None:
    internal = data.get(b"INTERNALDATE")
    return internal if isinstance(internal, datetime) else None


def uid_set(uids: Sequence[int]) -> str:
    """A UID set with runs written as ranges (``1:3,7``): one short command for a batch."""
    ordered = sorted(set(uids))
    runs: list[str] = []
    start = previous = ordered[0]
    for uid in [*ordered[1:], None]:
        if uid is not None and uid == previous + 1:
            previous = uid
            continue
        runs.append(str(start) if start == previous else f"{start}:{previous}")
        if uid is not None:
            start = previous = uid
    return ",".join(runs)
