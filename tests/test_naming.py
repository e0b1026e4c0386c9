"""Blob names and metadata: deterministic, confined to their prefix, ASCII-safe."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

import pytest

from shared.model import FetchedMessage
from shared.naming import blob_metadata, blob_name, dedup_key, folder_prefix, message_id, path_segment


@pytest.mark.parametrize("folder", ["..", ".", "../../etc", "a/b", "Archive/2024", "Entw&APw-rfe",
                                    "Entwürfe", "件名", "x\x00y", "%2F", " ", ""])
def test_folder_names_stay_one_segment_and_are_reversible(folder):
    segment = path_segment(folder)
    assert "/" not in segment and segment not in (".", "..") and not segment.startswith(".")
    assert segment.isascii() and segment.isprintable()
    if folder:
        assert unquote(segment) == folder


def test_blob_name_is_deterministic_and_sorts_by_uid():
    name = blob_name("Ops@Contoso.com", "Sent Items", 42, 7)
    assert name == "ops@contoso.com/Sent%20Items/42/0000000007.eml"
    assert blob_name("ops@contoso.com", "Sent Items", 42, 7) == name
    assert blob_name("a@b.c", "INBOX", 1, 9) < blob_name("a@b.c", "INBOX", 1, 10)
    assert name.startswith(folder_prefix("ops@contoso.com", "Sent Items"))


def test_metadata_is_ascii_and_carries_the_message_id():
    raw = "Message-ID: <ü@x>\r\nSubject: =?utf-8?q?h=C3=A9?=\r\n\r\nbody".encode()
    meta = blob_metadata("a@b.c", "Entwürfe", 5, FetchedMessage(3, raw, datetime(2026, 1, 1, tzinfo=UTC)))
    assert all(v.isascii() for v in meta.values())
    assert unquote(meta["message_id"]) == "<ü@x>" and meta["size"] == str(len(raw))
    assert unquote(meta["folder"]) == "Entwürfe" and meta["uid"] == "3"


def test_dedup_key_ignores_body_bytes_but_not_identity():
    a = b"Message-ID: <1@x>\r\n\r\nbody as sent"
    b = b"Message-ID: <1@x>\r\n\r\nbody as rebuilt by the server"
    c = b"Message-ID: <2@x>\r\n\r\nbody as sent"
    assert dedup_key(a, None) == dedup_key(b, None) != dedup_key(c, None)
    no_id = b"From: a@b\r\nSubject: s\r\nDate: x\r\n\r\nbody"
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert dedup_key(no_id, when).startswith("hdr-")
    assert dedup_key(no_id, when) != dedup_key(no_id, datetime(2026, 1, 2, tzinfo=UTC))


def test_headers_are_read_from_the_header_section_only():
    body_header_lookalike = b"Message-ID: <in-body@x>\r\n"
    raw = b"Subject: s\r\nMessage-ID: <real@x>\r\n\r\n" + body_header_lookalike
    assert message_id(raw) == "<real@x>"
    assert message_id(b"Subject: none\r\n\r\n" + body_header_lookalike) == ""
    assert message_id(b"Subject: lf only\nMessage-ID: <lf@x>\n\nMessage-ID: <no@x>\n") == "<lf@x>"
    assert message_id(b"Message-ID: <no-body@x>") == "<no-body@x>"
