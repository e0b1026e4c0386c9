"""POP3 mailboxes on the real stack: Dovecot's POP3 listener serves the same maildir as IMAP,
so the IMAP view of a message is what its POP3 blob must equal, byte for byte."""

from __future__ import annotations

import base64
import json
import logging
import os

import pytest

from devstack.seed import demo_messages
from devstack.stack import Stack
from shared.adapters.imap import ImapServer
from shared.adapters.pop3 import Pop3MailServer
from shared.adapters.table import TableStateStore
from shared.adapters.table_rows import POP3_CHECKPOINT_LIMIT
from shared.errors import AuthenticationError, CheckpointConflict, MailServerError, StorageError
from shared.model import Pop3Checkpoint, Secret
from shared.naming import pop3_blob_name, uidl_digest
from tests.integration.helpers import container, new_poller, poll, stored_blobs

pytestmark = pytest.mark.usefixtures("identity_endpoint")


def settings_env(stack: Stack, *mailboxes: tuple[str, str]) -> dict[str, str]:
    """App settings for (address, protocol) pairs, POP3 pointed at Dovecot's implicit TLS."""
    entries = [{"address": address, "protocol": protocol} for address, protocol in mailboxes]
    return stack.settings_env(json.dumps(entries)) | {
        "POP3_HOST": "127.0.0.1", "POP3_PORT": str(stack.pop3s_port)}


def pop3_server(stack: Stack) -> Pop3MailServer:
    return Pop3MailServer("127.0.0.1", stack.pop3s_port, ca_bundle=stack.ca_bundle)


def log_in(server: Pop3MailServer, address: str, token: str) -> None:
    with server.open(address, Secret(token)):
        pass


def edge_message() -> bytes:
    """Lines poplib's own reader would mangle or refuse: dot-stuffed ones, a lone dot, a
    line longer than 2048 bytes."""
    return (b"From: a@fabrikam.com\r\nTo: ops@contoso.com\r\nSubject: dots\r\n"
            b"Message-ID: <dots@fabrikam.com>\r\n\r\n"
            b".leading dot\r\n..two dots\r\n.\r\n" + b"L" * 10_000 + b"\r\nend\r\n")


def expected_pop3_blobs(stack: Stack, address: str) -> dict[str, bytes]:
    """POP3 blob name → the bytes IMAP serves for the same message (POP3 lists in UID order)."""
    by_uid = stack.server_messages(address, "INBOX")
    with pop3_server(stack).open(address, Secret(stack.issue_token())) as session:
        listed = session.list_uidls()
    assert [n for n, _ in listed] == list(range(1, len(by_uid) + 1))
    return {pop3_blob_name(address, uidl): by_uid[uid]
            for (_, uidl), uid in zip(listed, sorted(by_uid), strict=True)}


def test_seeded_messages_arrive_byte_for_byte_and_a_second_poll_delivers_nothing(stack, new_mailbox):
    address = new_mailbox()
    messages = [*demo_messages(), edge_message()]  # a malformed one, a 5 MB one
    stack.append_many(address, "INBOX", messages)
    env = settings_env(stack, (address, "pop3"))

    first = poll(env)
    assert first.failed == [], first.failed
    assert first.delivered == len(messages)
    stored = stored_blobs(env)
    assert stored == expected_pop3_blobs(stack, address)
    assert edge_message() in stored.values()

    second = poll(env)
    assert second.failed == [] and second.delivered == 0
    assert stored_blobs(env) == stored


def test_retrieve_equals_the_imap_bytes_of_each_message(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [*demo_messages()[4:6], edge_message()])
    by_uid = stack.server_messages(address, "INBOX")
    with pop3_server(stack).open(address, Secret(stack.issue_token())) as session:
        retrieved = [session.retrieve(n) for n, _ in session.list_uidls()]
    assert retrieved == [by_uid[uid] for uid in sorted(by_uid)]


def test_blob_metadata_and_new_and_removed_mail(stack, new_mailbox):
    address = new_mailbox()
    stack.append(address, "INBOX", edge_message())
    env = settings_env(stack, (address, "pop3"))
    poller, settings = new_poller(env)
    assert poller.run(settings.mailboxes).delivered == 1
    [blob] = list(container(env).list_blobs(include=["metadata"]))
    assert blob.content_settings.content_type == "message/rfc822"
    assert blob.name == pop3_blob_name(address, blob.metadata["uidl"])
    assert blob.metadata["mailbox"] == address and blob.metadata["message_id"] == "<dots@fabrikam.com>"
    assert int(blob.metadata["size"]) == blob.size

    stack.append(address, "INBOX", demo_messages()[0])
    with stack.imap_session(address) as conn:  # another client deletes the first message
        conn.select("INBOX")
        conn.uid("STORE", "1", "+FLAGS.SILENT", r"(\Deleted)")
        conn.expunge()
    assert poller.run(settings.mailboxes).delivered == 1
    assert len(stored_blobs(env)) == 2  # mail removed from the server stays delivered
    store = poller.pop3_checkpoints
    assert isinstance(store, TableStateStore)
    checkpoint = store.get_pop3_checkpoint(address)
    assert checkpoint is not None
    assert checkpoint.delivered == {uidl_digest(name.rsplit("/", 1)[1][:-4])
                                    for name in expected_pop3_blobs(stack, address)}


def test_ungranted_pop3_mailbox_fails_alone_while_an_imap_mailbox_succeeds(stack, new_mailbox):
    refused, imap_box = new_mailbox(granted=False), new_mailbox()
    stack.append(refused, "INBOX", edge_message())
    stack.append(imap_box, "INBOX", edge_message())
    report = poll(settings_env(stack, (refused, "pop3"), (imap_box, "imap")))
    by_address = {m.address: m for m in report.mailboxes}
    assert by_address[imap_box].ok and by_address[imap_box].delivered == 1
    failure = by_address[refused]
    assert failure.error_type == "AuthenticationError"
    for hint in ("refused the app's token", "POP.AccessAsApp", "Add-MailboxPermission",
                 "New-ServicePrincipal", "-PopEnabled $true"):
        assert hint in (failure.error or ""), hint


def test_a_token_without_pop_access_is_refused_over_pop3(stack, new_mailbox):
    address = new_mailbox()
    imap_only = stack.issue_token(roles=["IMAP.AccessAsApp"])
    with pytest.raises(AuthenticationError, match=r"POP\.AccessAsApp"):
        log_in(pop3_server(stack), address, imap_only)
    # The same token opens the mailbox over IMAP, and a full token over POP3: the role was missing.
    with ImapServer("127.0.0.1", stack.imaps_port, ca_bundle=stack.ca_bundle).open(
            address, Secret(imap_only)) as imap:
        assert imap.select_folder("INBOX").uidvalidity > 0
    with pop3_server(stack).open(address, Secret(stack.issue_token())) as session:
        assert session.list_uidls() == []


def test_unreachable_and_untrusted_pop3_servers(stack, new_mailbox):
    address = new_mailbox()
    with pytest.raises(MailServerError, match="Could not connect to POP3"):
        log_in(Pop3MailServer("127.0.0.1", 1, ca_bundle=stack.ca_bundle), address, "x")
    with pytest.raises(MailServerError, match="not trusted"):
        log_in(Pop3MailServer("127.0.0.1", stack.pop3s_port), address, "x")


def test_pop3_checkpoint_rows_hold_the_limit_are_etag_guarded_and_not_listed_as_folders(
        stack, new_mailbox):
    imap_box = new_mailbox()
    stack.append(imap_box, "INBOX", edge_message())
    env = settings_env(stack, (imap_box, "imap"))
    poller, settings = new_poller(env)
    poller.run(settings.mailboxes)
    store = poller.checkpoints
    assert isinstance(store, TableStateStore)

    mailbox = "big@contoso.com"
    full = frozenset(os.urandom(8) for _ in range(POP3_CHECKPOINT_LIMIT))
    written = store.put_pop3_checkpoint(Pop3Checkpoint(mailbox, full))
    read = store.get_pop3_checkpoint(mailbox)
    assert read is not None and read.delivered == full and read.etag == written.etag
    with pytest.raises(StorageError, match=f"at most {POP3_CHECKPOINT_LIMIT}"):
        store.put_pop3_checkpoint(Pop3Checkpoint(mailbox, full | {b"12345678"}, written.etag))

    smaller = store.put_pop3_checkpoint(Pop3Checkpoint(mailbox, frozenset({b"abcdefgh"}),
                                                       written.etag))
    assert store.get_pop3_checkpoint(mailbox) == smaller  # no chunk of the bigger set is left
    with pytest.raises(CheckpointConflict):
        store.put_pop3_checkpoint(written)  # a stale ETag
    with pytest.raises(CheckpointConflict):
        store.put_pop3_checkpoint(Pop3Checkpoint(mailbox))  # "create" over an existing row

    assert [(c.mailbox, c.folder) for c in store.list_checkpoints()] == [(imap_box, "INBOX")]


def test_no_token_or_xoauth2_string_in_any_log_line_at_debug(stack, new_mailbox, caplog):
    address, refused = new_mailbox(), new_mailbox(granted=False)
    stack.append(address, "INBOX", edge_message())
    env = settings_env(stack, (address, "pop3"), (refused, "pop3"))
    caplog.set_level(logging.DEBUG)
    poller, settings = new_poller(env)
    report = poller.run(settings.mailboxes)
    assert report.delivered == 1 and len(report.failed) == 1
    token = poller.tokens.get_token().reveal()
    forbidden = {
        "access token": token,
        "token signature": token.rsplit(".", 1)[-1],
        "XOAUTH2 string": base64.b64encode(stack.xoauth2(address, token)).decode()[:40],
        "XOAUTH2 string of the refused mailbox":
            base64.b64encode(stack.xoauth2(refused, token)).decode()[:40],
    }
    text = "\n".join(r.getMessage() + " " + str(r.args) for r in caplog.records)
    text += " ".join(m.error or "" for m in report.mailboxes)
    for what, value in forbidden.items():
        assert value not in text, f"{what} leaked into the logs or errors"
