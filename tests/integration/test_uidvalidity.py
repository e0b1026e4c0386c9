"""UIDVALIDITY resets on the real stack: old messages are matched one to one, nothing is lost."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from devstack.stack import Stack
from tests.integration.helpers import poll, stored_blobs

pytestmark = pytest.mark.usefixtures("identity_endpoint")

ARRIVED = datetime(2026, 11, 28, 9, 30, 15, tzinfo=UTC)


def append_at(stack: Stack, address: str, messages: list[bytes], when: datetime) -> None:
    """APPEND with an explicit internal date, as a migration or a same-second arrival gives."""
    with stack.imap_session(address) as conn:
        for raw in messages:
            typ, data = conn.append("INBOX", "", when, raw)
            assert typ == "OK", data


def test_a_reset_loses_nothing_when_messages_share_a_message_id_or_headers(stack, new_mailbox):
    address = new_mailbox()
    a = (b"Message-ID: <same-id@fabrikam.example>\r\nFrom: sender@fabrikam.example\r\n"
         b"To: ops@contoso.com\r\nDate: Sat, 28 Nov 2026 09:30:00 +0000\r\nSubject: invoice\r\n"
         b"\r\nThe first message.\r\n")
    no_id = (b"From: robot@fabrikam.example\r\nTo: ops@contoso.com\r\n"
             b"Date: Sat, 28 Nov 2026 09:30:00 +0000\r\nSubject: alert\r\n\r\ndisk 91% full\r\n")
    append_at(stack, address, [a, no_id], ARRIVED)
    env = stack.settings_env(address)
    assert poll(env).delivered == 2

    # Arrived after that poll, before the reset: same Message-ID with other content, a
    # header twin of the message without Message-ID, and a byte-for-byte copy of the first.
    b = a.replace(b"Subject: invoice", b"Subject: corrected invoice").replace(
        b"The first message.", b"The second message, resent with the same Message-ID.")
    twin = no_id.replace(b"disk 91% full", b"disk 99% full")
    append_at(stack, address, [b, twin, a], ARRIVED)
    old = stack.mailbox_status(address, "INBOX")["uidvalidity"]
    stack.set_uidvalidity(address, "INBOX", old + 1000)
    stack.append_many(address, "INBOX", [f"Message-ID: <new-{n}@x>\r\n\r\n{n}\r\n".encode()
                                         for n in range(20)])

    report = poll(env)
    assert report.failed == [], report.failed
    result = report.mailboxes[0].folders[0]
    assert result.resynced and result.duplicates_skipped == 2 and report.delivered == 23
    # One blob per message on the server, byte for byte: the old two matched one to one.
    server = stack.server_messages(address, "INBOX")
    assert Counter(stored_blobs(env).values()) == Counter(server.values())
    assert poll(env).delivered == 0


def test_streamed_messages_follow_the_same_rule(stack, new_mailbox):
    address = new_mailbox()
    big = (b"Message-ID: <big@fabrikam.example>\r\nSubject: scan\r\n\r\n"
           + b"page one of the scan\r\n" * 60_000)  # over 1 MiB: streamed
    append_at(stack, address, [big], ARRIVED)
    env = stack.settings_env(address) | {"LARGE_MESSAGE_BYTES": str(1024 * 1024)}
    assert poll(env).delivered == 1
    rescanned = big.replace(b"page one", b"page two")  # same Message-ID, other content
    append_at(stack, address, [rescanned, big], ARRIVED)
    stack.set_uidvalidity(address, "INBOX", stack.mailbox_status(address, "INBOX")["uidvalidity"] + 7)

    report = poll(env)
    assert report.failed == [], report.failed
    assert report.mailboxes[0].folders[0].duplicates_skipped == 1 and report.delivered == 2
    server = stack.server_messages(address, "INBOX")
    assert Counter(stored_blobs(env).values()) == Counter(server.values())
