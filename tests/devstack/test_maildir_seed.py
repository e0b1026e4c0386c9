"""Seeding mailboxes by writing maildir files: what IMAP then serves."""

from __future__ import annotations

import uuid

from devstack.stack import Stack


def test_seeded_mailboxes_serve_their_messages_byte_for_byte_in_order(stack: Stack):
    tag = uuid.uuid4().hex[:8]
    first, second = f"seed-a-{tag}@contoso.com", f"Seed-B-{tag}@contoso.com"
    messages = [f"Subject: {i}\r\nMessage-ID: <{i}.{tag}@x>\r\n\r\n{'body ' * i}\r\n".encode()
                for i in range(12)]
    stack.seed_mailboxes({first: messages, second: [b"Subject: bare LF\n\nline\n"]})

    assert stack.server_messages(first, "INBOX") == {i + 1: raw for i, raw in enumerate(messages)}
    # Dovecot keeps maildir files with bare LFs and serves CRLF, as for its own files.
    assert stack.server_messages(second, "INBOX") == {1: b"Subject: bare LF\r\n\r\nline\r\n"}
    assert stack.mailbox_status(first, "INBOX")["uidnext"] == 13
    granted = stack.mailboxes()
    assert stack.client_id.lower() in granted[first.lower()]
    assert stack.client_id.lower() in granted[second.lower()]


def test_seeding_again_appends_after_what_is_there(stack: Stack):
    address = f"seed-c-{uuid.uuid4().hex[:8]}@contoso.com"
    stack.seed_mailboxes({address: [b"Subject: 1\r\n\r\none\r\n"]})
    stack.append(address, "INBOX", b"Subject: 2\r\n\r\ntwo\r\n")
    stack.seed_mailboxes({address: [b"Subject: 3\r\n\r\nsix\r\n"]})  # the first one's size

    served = stack.server_messages(address, "INBOX")
    assert [served[uid] for uid in sorted(served)] == [
        b"Subject: 1\r\n\r\none\r\n", b"Subject: 2\r\n\r\ntwo\r\n", b"Subject: 3\r\n\r\nsix\r\n"]
