"""Blob names and metadata: deterministic, confined to their prefix, valid as headers, reversible."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from urllib.parse import quote, unquote, unquote_to_bytes

import pytest

from shared.model import FetchedMessage
from shared.naming import _SAFE_METADATA as SAFE_METADATA
from shared.naming import (
    SEGMENT_LIMIT,
    blob_metadata,
    blob_name,
    folder_prefix,
    metadata_value,
    path_segment,
    pop3_blob_metadata,
    uid_of,
    within_length,
)

HOSTILE = ["..", ".", "../../etc", "a/b", "Archive/2024", "Entw&APw-rfe", "Entwürfe", "件名",
           "x\x00y", "%2F", " ", "", " Leading", "Trailing ", ' "Quoted" ', "back\\slash",
           "hash#q?", "100%", "📬 Mail", "Test", "TEST", "Sent.", "tab\there",
           unicodedata.normalize("NFC", "Café"), unicodedata.normalize("NFD", "Café")]
# What a header value may be: visible ASCII only, so nothing to trim and nothing to fold.
HEADER_VALUE = re.compile(r"[!-~]*")


@pytest.mark.parametrize("folder", HOSTILE)
def test_folder_names_stay_one_segment_and_are_reversible(folder):
    segment = path_segment(folder)
    assert "/" not in segment and segment not in (".", "..") and not segment.startswith(".")
    assert not segment.endswith(".") and segment.isascii() and segment.isprintable()
    if folder:
        assert unquote(segment) == folder


def test_every_folder_name_gets_its_own_segment():
    segments = [path_segment(f) for f in HOSTILE]
    assert len(set(segments)) == len(segments)


def test_a_long_folder_name_is_cut_to_a_distinct_stable_segment():
    long_names = ["%" * 200, "%" * 199 + "&", "ü" * 300, "a" * 255, "a" * 256]
    segments = [path_segment(n) for n in long_names]
    assert all(len(s) <= SEGMENT_LIMIT for s in segments)
    assert len(set(segments)) == len(segments)
    assert segments == [path_segment(n) for n in long_names]  # stable
    assert segments[3] == "a" * 255  # names that fit keep the reversible form
    assert re.fullmatch(r"(%25)+~[0-9a-f]{32}", segments[0])  # never cut inside an escape
    name = blob_name("ops@contoso.com", "%" * 2000, 4294967295, 4294967295)
    assert len(name) <= 1024 and name.startswith(folder_prefix("ops@contoso.com", "%" * 2000))


def test_within_length_never_splits_an_escape():
    for extra in range(6):
        cut = within_length("a" * extra + "%C3%A9" * 100, 60, "x")
        assert len(cut) <= 60 and re.fullmatch(r"a*(%C3|%A9)*~[0-9a-f]{32}", cut)


def test_blob_name_is_deterministic_and_sorts_by_uid():
    name = blob_name("Ops@Contoso.com", "Sent Items", 42, 7)
    assert name == "ops@contoso.com/Sent%20Items/42/0000000007.eml"
    assert blob_name("ops@contoso.com", "Sent Items", 42, 7) == name
    assert blob_name("a@b.c", "INBOX", 1, 9) < blob_name("a@b.c", "INBOX", 1, 10)
    assert name.startswith(folder_prefix("ops@contoso.com", "Sent Items"))
    assert uid_of(name) == 7 and uid_of("a@b.c/INBOX/pop3/0007.txt") is None


def test_a_value_with_nothing_to_encode_is_what_percent_encoding_gives():
    # Such values skip quote(): every byte, alone and in runs, must come out as quote gives it.
    for byte in range(256):
        for raw in (bytes([byte]), b"a" + bytes([byte]) * 3 + b"z"):
            assert metadata_value(raw, 100) == (quote(raw, safe=SAFE_METADATA), False), raw
    assert metadata_value(b"x" * 300, 256) == ("x" * 256, True)  # still cut to its limit


@pytest.mark.parametrize("value", [*HOSTILE, "<a@b>", "  both  ", "x\r\n y", "+plus+"])
def test_metadata_values_are_valid_headers_and_round_trip(value):
    encoded, cut = metadata_value(value, 4096)
    assert not cut and HEADER_VALUE.fullmatch(encoded)
    assert unquote(encoded) == value


def test_metadata_is_header_safe_and_carries_the_message_id():
    raw = "Message-ID: <ü@x>\r\nSubject: =?utf-8?q?h=C3=A9?=\r\n\r\nbody".encode()
    meta = blob_metadata(" Leading@b.c", "Trailing ", 5,
                         FetchedMessage(3, raw, datetime(2026, 1, 1, 12, tzinfo=UTC)))
    assert all(HEADER_VALUE.fullmatch(v) for v in meta.values()), meta
    assert unquote(meta["message_id"]) == "<ü@x>" and meta["size"] == str(len(raw))
    assert unquote(meta["folder"]) == "Trailing " and unquote(meta["mailbox"]) == " Leading@b.c"
    assert meta["uid"] == "3" and meta["internal_date"] == "2026-01-01T12:00:00+00:00"
    assert not any(k.endswith("_truncated") for k in meta)


def test_message_ids_are_stored_losslessly_or_marked_as_cut():
    not_utf8 = b"<\xff\xfe\x00caf\xe9@x>"
    long_ascii = b"<" + b"a" * 3998 + b">"
    for mid in (not_utf8, long_ascii, b""):
        meta = blob_metadata("a@b.c", "INBOX", 1, FetchedMessage(1, b"Message-ID: " + mid + b"\r\n\r\n"))
        assert unquote_to_bytes(meta["message_id"]) == mid and "message_id_truncated" not in meta
    huge = b"<" + "ü".encode() * 3000 + b">"
    meta = blob_metadata("a@b.c", "€" * 1000, 1, FetchedMessage(1, b"Message-ID: " + huge + b"\r\n\r\n"))
    assert meta["message_id_truncated"] == "true" and meta["folder_truncated"] == "true"
    assert huge.startswith(unquote_to_bytes(meta["message_id"]))
    assert unquote(meta["message_id"], errors="strict")  # cut at a character boundary
    assert sum(len(k) + len(v) for k, v in meta.items()) <= 8 * 1024


def test_a_folded_message_id_is_unfolded_and_trimmed():
    meta = blob_metadata("a@b.c", "INBOX", 1, FetchedMessage(1, b"Message-ID:\r\n  <x@y> \r\n\r\n"))
    assert unquote(meta["message_id"]) == "<x@y>"


def test_pop3_metadata_is_encoded_the_same_way():
    meta = pop3_blob_metadata("a@b.c", "uidl with space", b"Message-ID: <\xff@x>\r\n\r\n")
    assert meta["uidl"] == "uidl%20with%20space" and unquote_to_bytes(meta["message_id"]) == b"<\xff@x>"
    assert meta["dedup_key"].startswith("v2-")
