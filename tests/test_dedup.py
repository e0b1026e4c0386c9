"""The dedup key: differs for messages that differ, stays for the same message sent again."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from email.parser import BytesHeaderParser
from email.policy import compat32

from shared.dedup import (
    HEAD_BYTES,
    MessageDigest,
    _plain_fields,
    dedup_key,
    header_fields,
    header_section,
    is_current_key,
)

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


# Keys stored by earlier releases in blob metadata: a resync matches against them, so a
# message must get exactly the same key from every release.
STORED_KEYS = {
    A: ("v2-fa8d65628c35ae8db33f1f284ecea141185086e34bfc82de3187222ee66cc52c",
        "v2-73de04b2c2844e91a2a8ce64fdefc2bc138a64c902e4e5c98d5c9566f1a68308"),
    b"Subject: caf\xc3\xa9\r\n  and\tmore \r\nTo: a@x\r\nTo: b@x\r\nFrom: \xff\xfe\r\n\r\nbody":
        ("v2-0e6f9543745b7651455dcd5e7d0da77cdfb0f707ca2de9e2fe756a63777f40c3",
         "v2-c45f4c879ed24d27332eee26c4f92db32edf3f9911a0390766722efe115b9591"),
    b"Message-ID: <lf@x>\nSubject: s\n\nbody\n":
        ("v2-94c891b4e6e56a53106d957c1004b7a4a839b90bc42986a3031e954e71587329",
         "v2-6c7d0dd8b4084d67bb5360338e2ca95405bf687a2730be0fd82afe2936a0acf7"),
    b"just text, no empty line":
        ("v2-c1dc1dca9ce5fd7c98e5f71cf18da3752c1a74e4196ed0aa787cdb2a8b40b42c",
         "v2-31258d1659c353125e54074cc9df7be747e7fd47925d484ef729072a6d60a1ee"),
    A + b"z" * (HEAD_BYTES + 5):
        ("v2-19f39e8ba6a5c155a13efd039752248513341ecb49b91c2b455b51b33547e7d4",
         "v2-a0543eedd7c240fa73d88cee6dfa1e2ae400db46c4b2081339a70788a549bb33"),
}


def test_keys_stay_those_earlier_releases_stored():
    for raw, (with_date, without) in STORED_KEYS.items():
        assert (dedup_key(raw, WHEN), dedup_key(raw, None)) == (with_date, without), raw[:40]
        digest = MessageDigest()
        for start in range(0, len(raw), 7):
            digest.update(raw[start:start + 7])
        assert digest.dedup_key(WHEN) == with_date


def _email_package_fields(section: bytes) -> list[tuple[str, bytes]]:
    parsed = BytesHeaderParser(policy=compat32).parsebytes(section)
    return [(name.lower(), value.encode("ascii", "surrogateescape"))
            for name, value in parsed.raw_items()]


_NAMES = [b"Subject", b"Message-ID", b"X-Odd_Name.1", b"from", b"", b"Bad Name", b"From ",
          b"N\xc3\xa4me", b"\tLead", b" Lead", b"Re:Re"]
_VALUES = [b"", b" plain", b"  \t lead", b" trail  ", b" 8-bit \xff\xfe caf\xc3\xa9", b":colon",
           b" bare\rcr", b" bare\nlf", b" tab\there", b" =?utf-8?q?x?=", b"\x00nul", b" \x0b\x0c"]
_FOLDS = [b"", b"\r\n  more", b"\r\n\tmore", b"\r\n ", b"\r\n\t\r\n x", b"\r\nnot folded"]


def test_plain_sections_are_read_as_the_email_package_reads_them():
    # Keys must not change: the direct reading of a plain section gives exactly what the
    # email package gives; anything it does not know goes to the package itself.
    rng = random.Random(20261202)  # noqa: S311 - seeded inputs, not secrets
    direct = 0
    for _ in range(4000):
        lines = [rng.choice(_NAMES) + b":" + rng.choice(_VALUES) + rng.choice(_FOLDS)
                 for _ in range(rng.randint(1, 6))]
        section = b"\r\n".join(lines) + rng.choice([b"\r\n\r\n", b"\r\n\r\n", b"\n\n", b"\r\n"])
        expected = _email_package_fields(section)
        assert header_fields(section) == expected, section
        plain = _plain_fields(section)
        if plain is not None:
            direct += 1
            assert plain == expected, section
    assert direct > 100  # the direct reading was tried, not only the fallback
