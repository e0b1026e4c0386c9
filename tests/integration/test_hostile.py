"""Hostile folder names and messages on the real stack: each delivered byte for byte, under
its own prefix, with metadata that is a valid header and round-trips; nothing delivered twice."""

from __future__ import annotations

import base64
import json
import re
import socket
import unicodedata
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import date
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import pytest
from imapclient import IMAPClient

from devstack.dovecot import INSPECTOR_APPID
from devstack.stack import Stack
from shared.adapters.imap import ImapServer, ImapSession
from shared.model import FetchedMessage, FolderState, MessageInfo, Secret
from shared.naming import SEGMENT_LIMIT, blob_name, folder_prefix, pop3_blob_name
from tests.integration.helpers import container, new_poller, poll, stored_blobs
from tests.integration.test_pop3 import settings_env as pop3_settings_env

pytestmark = pytest.mark.usefixtures("identity_endpoint")

FOLDERS = [" Leading", "Trailing ", ' "Quoted" ', "A&B", "Parent/Child", "100%", "50% off",
           "📬 Mail", "Test", "TEST", unicodedata.normalize("NFC", "Café"),
           unicodedata.normalize("NFD", "Café"), "back\\slash", "hash#q?", "*star",
           "%" * 200]  # 600 characters once encoded: longer than a blob path segment may be
NON_UTF8_ID = b"<\xff\xfe\x80caf\xe9@fabrikam.example>"
LONG_ID = b"<" + b"x" * 3980 + b"@fabrikam.example>"
MESSAGES = [
    b"Message-ID: <dup@fabrikam.example>\r\nSubject: first\r\n\r\none\r\n",
    b"Message-ID: <dup@fabrikam.example>\r\nSubject: second\r\n\r\ntwo\r\n",
    b"Message-ID: \r\nSubject: empty id\r\n\r\nbody\r\n",
    b"Message-ID: " + LONG_ID + b"\r\nSubject: long id\r\n\r\nbody\r\n",
    b"Message-ID: " + NON_UTF8_ID + b"\r\nSubject: not utf-8\r\n\r\nbody\r\n",
    b"no header section, just a line of text\r\n",
    b"Subject: nul\r\n\r\nbody\x00with a NUL\r\n",
    b"Subject: cr\r\n\r\nline one\rline two\r\n",
    b"Subject: lf only\n\nbody\n",
    b"Subject: no empty line and no body",
]
HEADER_VALUE = re.compile(r"[!-~]*")  # visible ASCII: nothing to trim or fold


def header_safe(value: str | None) -> bool:
    # The SDK reads an empty value (no Message-ID) back as None.
    return HEADER_VALUE.fullmatch(value or "") is not None


def inspector(stack: Stack, address: str) -> IMAPClient:
    """An IMAPClient session (it speaks modified UTF-7 folder names) regardless of grants."""
    client = IMAPClient("127.0.0.1", stack.imaps_port, ssl=True, ssl_context=stack.ssl_context())
    client.oauth2_login(address, stack.issue_token(appid=INSPECTOR_APPID, oid=INSPECTOR_APPID,
                                                   sub=INSPECTOR_APPID))
    return client


def server_view(stack: Stack, address: str, folders: Sequence[str]) -> dict[str, bytes]:
    """Blob name → what the server sends for BODY.PEEK[], for every message of ``folders``."""
    expected: dict[str, bytes] = {}
    client = inspector(stack, address)
    try:
        for folder in folders:
            uidvalidity = client.select_folder(folder, readonly=True)[b"UIDVALIDITY"]
            uids = client.search(["ALL"])
            for uid, data in client.fetch(uids, ["BODY.PEEK[]"]).items() if uids else ():
                expected[blob_name(address, folder, int(uidvalidity), uid)] = data[b"BODY[]"]
    finally:
        client.logout()
    return expected


def seed_corpus(stack: Stack, address: str) -> None:
    for folder in FOLDERS:
        stack.create_folder(address, folder)
    client = inspector(stack, address)
    try:
        for raw in MESSAGES:
            client.append("INBOX", raw)
        for n, folder in enumerate(FOLDERS):
            client.append(folder, f"Message-ID: <folder-{n}@fabrikam.example>\r\n\r\n{n}\r\n".encode())
    finally:
        client.logout()
    stack.append(address, "INBOX", b"")  # IMAP APPEND refuses 0 bytes; local delivery does not


def test_hostile_folders_and_messages_arrive_byte_for_byte_each_under_its_own_prefix(stack, new_mailbox):
    address = new_mailbox()
    seed_corpus(stack, address)
    folders = ["INBOX", *FOLDERS]
    env = stack.settings_env(json.dumps([{"address": address, "folders": folders}]))

    first = poll(env)
    assert first.failed == [], first.failed
    assert first.delivered == len(MESSAGES) + 1 + len(FOLDERS)
    stored = stored_blobs(env)
    assert stored == server_view(stack, address, folders)
    assert b"" in stored.values()

    prefixes = [folder_prefix(address, f) for f in folders]
    assert len(set(prefixes)) == len(folders)
    for folder, prefix in zip(folders, prefixes, strict=True):
        segment = prefix.split("/")[1]
        assert len(segment) <= SEGMENT_LIMIT
        assert unquote(segment) == folder or len(folder.encode()) * 3 > SEGMENT_LIMIT
        assert [n for n in stored if n.startswith(prefix)], folder
    blobs = list(container(env).list_blobs(include=["metadata"]))
    for blob in blobs:
        assert all(header_safe(v) for v in blob.metadata.values()), blob.metadata
        assert unquote(blob.metadata["folder"]) in folders
        assert blob.name.startswith(folder_prefix(address, unquote(blob.metadata["folder"])))
        assert unquote(blob.metadata["mailbox"]) == address
    ids = {unquote_to_bytes(b.metadata["message_id"] or "") for b in blobs}
    assert {NON_UTF8_ID, LONG_ID, b"<dup@fabrikam.example>", b""} <= ids
    assert not any(k.endswith("_truncated") for b in blobs for k in b.metadata)

    second = poll(env)
    assert second.failed == [] and second.delivered == 0
    assert stored_blobs(env) == stored

    # After a reset every message is matched one to one, the duplicate Message-ID included.
    old = stack.mailbox_status(address, "INBOX")["uidvalidity"]
    stack.set_uidvalidity(address, "INBOX", old + 1)
    third = poll(env)
    assert third.failed == [] and third.delivered == 0
    inbox = next(f for f in third.mailboxes[0].folders if f.folder == "INBOX")
    assert inbox.resynced and inbox.duplicates_skipped == len(MESSAGES) + 1


def test_hostile_messages_arrive_byte_for_byte_over_pop3(stack, new_mailbox):
    address = new_mailbox()
    client = inspector(stack, address)
    try:
        for raw in MESSAGES:
            client.append("INBOX", raw)
    finally:
        client.logout()
    stack.append(address, "INBOX", b"")
    env = pop3_settings_env(stack, (address, "pop3"))
    report = poll(env)
    assert report.failed == [] and report.delivered == len(MESSAGES) + 1
    # Dovecot's POP3 differs from its IMAP here (NUL kept, a last line always ended), so
    # the bytes to compare with are RETR's own.
    assert stored_blobs(env) == pop3_view(stack, address)
    for blob in container(env).list_blobs(include=["metadata"]):
        assert all(header_safe(v) for v in blob.metadata.values()), blob.metadata
    assert poll(env).delivered == 0


def pop3_view(stack: Stack, address: str) -> dict[str, bytes]:
    """Blob name → what RETR sends, read off the socket with nothing but dot-unstuffing."""
    token = stack.issue_token(appid=INSPECTOR_APPID, oid=INSPECTOR_APPID, sub=INSPECTOR_APPID)
    with socket.create_connection(("127.0.0.1", stack.pop3s_port), timeout=30) as plain, \
            stack.ssl_context().wrap_socket(plain, server_hostname="127.0.0.1") as conn:
        replies = conn.makefile("rb")

        def multiline(command: bytes) -> bytes:
            conn.sendall(command + b"\r\n")
            assert replies.readline().startswith(b"+OK"), command
            body = b""
            while not body.endswith(b"\r\n.\r\n") and body != b".\r\n":
                body += replies.readline()
            return re.sub(rb"(^|\r\n)\.", rb"\1", body.removesuffix(b".\r\n"))

        assert replies.readline().startswith(b"+OK")
        conn.sendall(b"AUTH XOAUTH2 " + base64.b64encode(stack.xoauth2(address, token)) + b"\r\n")
        assert replies.readline().startswith(b"+OK")
        listed = [line.split() for line in multiline(b"UIDL").splitlines()]
        return {pop3_blob_name(address, uidl.decode()): multiline(b"RETR " + number)
                for number, uidl in listed}


def expunge(stack: Stack, address: str, uid: int) -> None:
    """What another client does: flag the message deleted and expunge it."""
    client = inspector(stack, address)
    try:
        client.select_folder("INBOX")
        client.delete_messages([uid])
        client.expunge()
    finally:
        client.logout()


class _Session:
    """A real IMAP session; right after it fetched sizes, another client acts."""

    def __init__(self, session: ImapSession, after_sizes: Callable[[], None]) -> None:
        self._session = session
        self._after_sizes = after_sizes

    def select_folder(self, folder: str) -> FolderState:
        return self._session.select_folder(folder)

    def search_uids_from(self, first_uid: int) -> list[int]:
        return self._session.search_uids_from(first_uid)

    def fetch(self, uids: Sequence[int]) -> Iterator[FetchedMessage]:
        return self._session.fetch(uids)

    def fetch_info(self, uids: Sequence[int]) -> list[MessageInfo]:
        infos = self._session.fetch_info(uids)
        self._after_sizes()
        return infos

    def fetch_pieces(self, uid: int, piece: int) -> Generator[bytes, None, None] | None:
        return self._session.fetch_pieces(uid, piece)

    def search_uids_since(self, day: date) -> list[int]:
        return self._session.search_uids_since(day)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)  # the rest of MailSession, unchanged


class ExpungingAfterSizes:
    """The real IMAP adapter; another client expunges a message between the size FETCH and the
    body FETCH: the window in which a poll can meet a message that is gone."""

    def __init__(self, server: ImapServer, after_sizes: Callable[[], None]) -> None:
        self._server = server
        self._after_sizes = after_sizes

    @contextmanager
    def open(self, address: str, token: Secret, *, deadline: float | None = None) -> Iterator[_Session]:
        with self._server.open(address, token, deadline=deadline) as session:
            yield _Session(session, self._after_sizes)


def pieces(session: ImapSession, uid: int) -> list[bytes]:
    body = session.fetch_pieces(uid, 1024)
    assert body is not None
    with closing(body):
        return list(body)


def large_message(n: int) -> bytes:
    return f"Message-ID: <large-{n}@fabrikam.example>\r\n\r\n".encode() + b"z" * (1536 * 1024)


@pytest.mark.parametrize("streamed", [True, False])
def test_a_message_expunged_during_a_poll_is_not_delivered(stack, new_mailbox, streamed):
    address = new_mailbox()
    client = inspector(stack, address)
    try:
        for raw in (b"Subject: before\r\n\r\n1\r\n", large_message(1), b"Subject: after\r\n\r\n3\r\n"):
            client.append("INBOX", raw)
    finally:
        client.logout()
    env = stack.settings_env(address) | {
        "LARGE_MESSAGE_BYTES": str(1024 * 1024 if streamed else 1024 * 1024 * 1024)}
    poller, settings = new_poller(env)
    assert isinstance(poller.server, ImapServer)
    poller.server = ExpungingAfterSizes(poller.server, lambda: expunge(stack, address, 2))

    report = poller.run(settings.mailboxes)
    assert report.failed == [], report.failed
    assert report.delivered == 2
    stored = stored_blobs(env)
    assert stored == server_view(stack, address, ["INBOX"]) and b"" not in stored.values()
    checkpoint = poller.checkpoints.get_checkpoint(address, "INBOX")
    assert checkpoint is not None and checkpoint.last_uid == 3


def test_the_imap_adapter_says_a_gone_message_is_gone(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [large_message(1), b"Subject: s\r\n\r\n"])
    server = ImapServer("127.0.0.1", stack.imaps_port, ca_bundle=stack.ca_bundle)
    with server.open(address, Secret(stack.issue_token())) as session:
        session.select_folder("INBOX")
        assert [i.uid for i in session.fetch_info([1, 2])] == [1, 2]
        assert pieces(session, 2) == [b"Subject: s\r\n\r\n"]
        expunge(stack, address, 1)
        assert session.fetch_pieces(1, 1024) is None  # NIL, right after the expunge
        assert session.fetch_pieces(1, 1024) is None  # no FETCH data at all
        assert list(session.fetch([1])) == []
        assert 1 not in session.search_uids_from(1)
