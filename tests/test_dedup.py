"""The dedup key: differs for messages that differ, stays for the same message sent again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from shared.dedup import HEAD_BYTES, MessageDigest, dedup_key, header_section, is_current_key

WHEN = datetime(2026, 11, 28, 9, 30, 15, tzinfo=UTC)
A = (b"Message-ID: <same-id@fabrikam.example>\r\nFrom: a@fabrikam.example\r\nTo: ops@contoso.com\r\n"
     b"Date: Sat, 28 Nov 2026 09:30:00 +0000\r\nSubject: invoice\r\nReceived: by mx1\r\n\r\nbody\r\n")


def test_same_message_id_with_other_content_gets_another_key():
    key = dedup_key(A, WHEN)
    for changed in (A.replace(b"Subject: invoice", b"Subject: corrected"),
                    A.replace(b"body", b"other body"),
                    A.replace(b"09:30:00", b"09:31:00"),
                    A.replace(b"To: ops", b"To: billing"),
                    A.replace(b"\r\n\r\n", b"\r\nCc: x@y\r\n\r\n"),
                    A.replace(b"\r\n\r\n", b"\r\nResent-Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n\r\n")):
        assert dedup_key(changed, WHEN) != key, changed
    assert dedup_key(A, WHEN + timedelta(seconds=1)) != key
    assert dedup_key(A, None) != key


def test_twins_without_message_id_differ_by_body():
    no_id = b"From: robot@x\r\nSubject: alert\r\nDate: Sat, 28 Nov 2026 09:30:00 +0000\r\n\r\n"
    assert dedup_key(no_id + b"disk 91% full\r\n", WHEN) != dedup_key(no_id + b"disk 99% full\r\n", WHEN)


def test_the_same_message_sent_again_keeps_its_key():
    key = dedup_key(A, WHEN)
    assert dedup_key(A, WHEN) == key
    assert is_current_key(key) and not is_current_key("mid-" + "0" * 64)
    # Refolded identity headers, other trace headers, and the same instant in another zone.
    refolded = A.replace(b"Subject: invoice", b"Subject:\r\n  invoice")
    retraced = A.replace(b"Received: by mx1", b"Received: by mx2\r\nX-Scanned: yes")
    assert dedup_key(refolded, WHEN) == key and dedup_key(retraced, WHEN) == key
    assert dedup_key(A, WHEN.astimezone(timezone(timedelta(hours=-5)))) == key
    assert dedup_key(A, WHEN.replace(microsecond=5)) == key


def test_one_value_cannot_run_into_the_next():
    two = b"To: a@x\r\nTo: b@x\r\n\r\n"
    one = b"To: a@x b@x\r\n\r\n"
    assert dedup_key(two, None) != dedup_key(one, None)


def test_a_message_read_in_chunks_gets_the_key_it_gets_whole():
    big = A + bytes(range(256)) * (3 * HEAD_BYTES // 256) + b"\r\n"
    header_at_edge = b"X: " + b"h" * (HEAD_BYTES - 10) + b"\r\n\r\nbody"
    for raw in (A, big, header_at_edge, b"", b"no header section at all"):
        for size in (1, 1000, HEAD_BYTES - 1, HEAD_BYTES, 4 * 1024 * 1024):
            digest = MessageDigest()
            for start in range(0, len(raw), size):
                digest.update(raw[start:start + size])
            assert digest.dedup_key(WHEN) == dedup_key(raw, WHEN) and digest.size == len(raw)


def test_header_section_ends_at_the_first_empty_line():
    assert header_section(b"A: 1\r\n\r\nB: 2\r\n\r\n") == b"A: 1\r\n\r\n"
    assert header_section(b"A: 1\n\nbody") == b"A: 1\n\n"
    assert header_section(b"no empty line") == b"no empty line"
    # Header lookalikes in the body are not headers.
    assert MessageDigest(b"Subject: s\r\n\r\nMessage-ID: <in-body@x>\r\n").header("message-id") is None
    assert MessageDigest(b"Message-ID: <no-body@x>").header("message-id") == b"<no-body@x>"
