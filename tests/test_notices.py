"""Notices and summaries around the sink, against in-memory ports: end state, not calls."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from urllib.parse import unquote

import pytest

from shared.model import FetchedMessage, MessageInfo
from shared.naming import blob_metadata, blob_name, pop3_blob_metadata, pop3_blob_name
from shared.notice_document import (
    METADATA_BYTES,
    NOTICE_BYTES,
    SCHEMA,
    Delivery,
    described_metadata,
    notice_document,
    notice_id,
    notice_text,
)
from shared.notices import HEAD_BYTES, AnnouncingSink
from shared.poll import Poller, PollOptions
from shared.settings import MailboxConfig
from shared.summary import AttachmentSummary, MessageSummary
from tests.fakes import (
    FakeClock,
    FakeDeliveredBlobs,
    FakeNoticeQueue,
    FakeServer,
    FakeSink,
    FakeStateStore,
    FakeTokens,
)
from tests.test_summary import HOSTILE, multipart

A = "ops@contoso.com"
URL = "https://mailstore.blob.core.windows.net/mail"
WHEN = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def message(n: int) -> bytes:
    return (f"Message-ID: <m{n}@contoso.com>\r\nFrom: =?utf-8?q?J=C3=B6rg?= <j@fabrikam.example>\r\n"
            f"Subject: invoice {n}\r\n\r\nbody {n}\r\n").encode()


def announcing(*, summary_blobs: bool = False) -> tuple[AnnouncingSink, FakeSink, FakeNoticeQueue,
                                                        FakeDeliveredBlobs]:
    inner, queue = FakeSink(), FakeNoticeQueue()
    delivered = FakeDeliveredBlobs(inner)
    sink = AnnouncingSink(inner, delivered, container="mail", container_url=URL, queue=queue,
                          summary_blobs=summary_blobs)
    return sink, inner, queue, delivered


def notices(queue: FakeNoticeQueue) -> list[dict[str, object]]:
    return [json.loads(text) for text in queue.messages]


def poller_over(sink: AnnouncingSink, server: FakeServer, state: FakeStateStore) -> Poller:
    return Poller(FakeTokens(), server, sink, state, state,
                  PollOptions(fetch_batch_size=3, upload_concurrency=2), FakeClock())


def test_each_message_is_described_in_its_metadata_and_announced_once_stored():
    sink, inner, queue, _ = announcing()
    raw = message(7)
    name = blob_name(A, "INBOX", 41, 7)
    assert sink.create(name, raw, blob_metadata(A, "INBOX", 41, FetchedMessage(7, raw, WHEN)))
    stored, metadata = inner.blobs[name]
    assert stored == raw
    sha256 = hashlib.sha256(raw).hexdigest()
    assert metadata["sha256"] == sha256 and metadata["attachment_count"] == "0"
    assert unquote(metadata["subject"]) == "invoice 7" and unquote(metadata["from"]) == "Jörg <j@fabrikam.example>"
    [notice] = notices(queue)
    assert notice["schema"] == SCHEMA == "mailferry.message.v1"
    assert notice["id"] == notice_id("mail", name)
    assert notice["blob_name"] == name and notice["container"] == "mail"
    assert notice["blob_url"] == f"{URL}/ops%40contoso.com/INBOX/41/0000000007.eml"
    assert (notice["protocol"], notice["mailbox"], notice["folder"]) == ("imap", A, "INBOX")
    assert (notice["uidvalidity"], notice["uid"], notice["uidl"]) == (41, 7, None)
    assert (notice["size"], notice["sha256"]) == (len(raw), sha256)
    assert notice["internal_date"] == "2026-11-28T10:00:00+00:00"
    assert notice["summary"]["subject"] == "invoice 7"  # type: ignore[index]
    assert notice["summary"]["message_id"] == "<m7@contoso.com>"  # type: ignore[index]


def test_a_blob_already_there_is_announced_again_with_the_same_id():
    sink, _, queue, _ = announcing()
    raw, name = message(1), blob_name(A, "INBOX", 1, 1)
    metadata = blob_metadata(A, "INBOX", 1, FetchedMessage(1, raw, WHEN))
    assert sink.create(name, raw, metadata) is True
    assert sink.create(name, raw, metadata) is False  # a rerun after a crash before the notice
    first, second = notices(queue)
    assert first == second


def test_a_notice_that_cannot_be_sent_holds_the_checkpoint_and_the_next_run_sends_it():
    sink, inner, queue, _ = announcing()
    server, state = FakeServer(), FakeStateStore()
    for n in range(5):
        server.folder(A).append(message(n))
    queue.fail = True
    failed = poller_over(sink, server, state).run([MailboxConfig(A)])
    assert not failed.mailboxes[0].ok
    assert inner.blobs and not queue.messages  # blobs written, every notice failed
    checkpoint = state.get_checkpoint(A, "INBOX")
    assert checkpoint is None or checkpoint.last_uid == 0
    queue.fail = False
    again = poller_over(sink, server, state).run([MailboxConfig(A)])
    assert again.mailboxes[0].ok
    sent = notices(queue)
    assert {n["blob_name"] for n in sent} == set(inner.blobs) and len(inner.blobs) == 5
    assert {n["uid"] for n in sent} == {1, 2, 3, 4, 5}
    saved = state.get_checkpoint(A, "INBOX")
    assert saved is not None and saved.last_uid == 5


def test_a_streamed_message_is_hashed_piece_by_piece_and_summarised_from_its_head():
    sink, inner, queue, _ = announcing()
    raw = message(3) + b"x" * (3 * HEAD_BYTES)
    name = blob_name(A, "INBOX", 2, 3)
    info = MessageInfo(3, len(raw), WHEN)
    pieces = [raw[i:i + 50_000] for i in range(0, len(raw), 50_000)]

    def metadata() -> dict[str, str]:
        return blob_metadata(A, "INBOX", 2, FetchedMessage(info.uid, raw, WHEN))

    assert sink.create_from_chunks(name, iter(pieces), metadata)
    stored, described = inner.blobs[name]
    assert stored == raw and described["sha256"] == hashlib.sha256(raw).hexdigest()
    assert "attachment_count" not in described  # only the head was read
    [notice] = notices(queue)
    assert notice["size"] == len(raw) and notice["sha256"] == described["sha256"]
    assert notice["summary"]["subject"] == "invoice 3" and notice["summary"]["partial"] is True  # type: ignore[index]
    assert notice["summary"]["attachments"] is None  # type: ignore[index]


def test_a_large_message_found_stored_before_streaming_is_announced_from_storage():
    sink, inner, queue, _ = announcing()
    raw = message(9) + b"y" * (2 * HEAD_BYTES)
    name = blob_name(A, "INBOX", 2, 9)
    # Written by a run that died before its notice: the blob and its described metadata.
    metadata = described_metadata(blob_metadata(A, "INBOX", 2, FetchedMessage(9, raw, WHEN)),
                                  MessageSummary(), hashlib.sha256(raw).hexdigest())
    inner.blobs[name] = (raw, metadata)
    assert sink.exists(name) is True
    [notice] = notices(queue)
    assert notice["id"] == notice_id("mail", name) and notice["uid"] == 9
    assert notice["size"] == len(raw) and notice["sha256"] == hashlib.sha256(raw).hexdigest()
    assert notice["summary"]["subject"] == "invoice 9"  # type: ignore[index]
    assert sink.exists(blob_name(A, "INBOX", 2, 10)) is False and len(queue.messages) == 1


def test_a_blob_written_before_notices_existed_is_hashed_from_storage():
    sink, inner, queue, _ = announcing()
    raw = message(4) * 3000
    name = blob_name(A, "INBOX", 2, 4)
    inner.blobs[name] = (raw, blob_metadata(A, "INBOX", 2, FetchedMessage(4, raw, WHEN)))
    assert sink.exists(name)
    assert notices(queue)[0]["sha256"] == hashlib.sha256(raw).hexdigest()


def test_pop3_notices_carry_the_uidl():
    sink, _, queue, _ = announcing()
    raw, uidl = message(5), "AAQkAGI2-ü"
    sink.create(pop3_blob_name(A, uidl), raw, pop3_blob_metadata(A, uidl, raw))
    [notice] = notices(queue)
    assert (notice["protocol"], notice["uidl"], notice["uid"], notice["uidvalidity"]) == ("pop3", uidl, None, None)
    assert notice["internal_date"] is None and notice["folder"] == "INBOX"


def test_summary_blobs_sit_beside_the_message_and_the_notice_names_them():
    sink, inner, queue, delivered = announcing(summary_blobs=True)
    raw, name = message(2), blob_name(A, "INBOX", 1, 2)
    sink.create(name, raw, blob_metadata(A, "INBOX", 1, FetchedMessage(2, raw, WHEN)))
    json_name = name.removesuffix(".eml") + ".json"
    [notice] = notices(queue)
    assert notice["summary_blob_name"] == json_name
    assert json.loads(delivered.documents[json_name]) == notice
    assert json_name not in inner.blobs  # written beside, not through the message sink


def test_summary_blobs_alone_send_no_notice():
    inner = FakeSink()
    delivered = FakeDeliveredBlobs(inner)
    sink = AnnouncingSink(inner, delivered, container="mail", container_url=URL, queue=None,
                          summary_blobs=True)
    raw, name = message(2), blob_name(A, "INBOX", 1, 2)
    sink.create(name, raw, blob_metadata(A, "INBOX", 1, FetchedMessage(2, raw, WHEN)))
    assert list(delivered.documents) == [name.removesuffix(".eml") + ".json"]


def worst_case_metadata() -> dict[str, str]:
    """naming's fields at their longest: every value past its limit and cut."""
    mailbox = "m" * 2000 + "@contoso.com"
    raw = b"Message-ID: <" + "\u00e9".encode() * 5000 + b">\r\n\r\nx"
    return blob_metadata(mailbox, "\u00e9" * 3000, 4294967295, FetchedMessage(4294967295, raw, WHEN))


def test_metadata_with_the_summary_stays_within_8_kib_and_every_value_is_a_header():
    summary = MessageSummary(subject="\u202e" + "Ä" * 5000, from_="\x00\r\n" * 3000)
    described = described_metadata(worst_case_metadata(), summary, "0" * 64)
    assert sum(len(k) + len(v) for k, v in described.items()) <= METADATA_BYTES < 8 * 1024
    assert all(v.isascii() and v.isprintable() and " " not in v for v in described.values())
    assert described["sha256"] == "0" * 64
    ordinary = described_metadata({"mailbox": A}, MessageSummary(subject="Ä" * 5000), "0" * 64)
    assert ordinary["subject_truncated"] == "true" and len(ordinary["subject"]) <= 1024
    assert unquote(ordinary["subject"]) == "Ä" * (len(ordinary["subject"]) // 6)


def big_summary() -> MessageSummary:
    attachment = AttachmentSummary("é" * 99 + ".pdf", "application/pdf", 10**9, "<" + "c" * 1998 + ">", False)
    return MessageSummary(subject="\U0001f4ec" * 2000, from_="x" * 2000, to="y" * 2000, cc="z" * 2000,
                          references="<r@x> " * 333, attachments=[attachment] * 200)


def test_a_notice_too_long_for_a_queue_message_drops_the_attachment_list_first():
    metadata = blob_metadata(A, "INBOX", 1, FetchedMessage(1, b"x", WHEN))
    delivery = Delivery("mail", URL, blob_name(A, "INBOX", 1, 1), metadata, 1, "0" * 64, big_summary())
    text = notice_text(delivery)
    assert len(text.encode()) <= NOTICE_BYTES
    summary = json.loads(text)["summary"]
    assert summary["attachments"] is None and summary["partial"] is True
    assert summary["subject"] == "\U0001f4ec" * 2000  # the headers fit once the list is gone
    small = notice_text(delivery, limit=9000)
    assert len(small.encode()) <= 9000 and json.loads(small)["summary"]["subject"].startswith("\U0001f4ec")


def test_the_longest_notice_still_fits_a_queue_message():
    metadata = worst_case_metadata()
    name = "n" * 1000 + ".eml"
    delivery = Delivery("c" * 63, URL, name, metadata, 1, "0" * 64, big_summary())
    assert len(json.dumps(notice_document(delivery), ensure_ascii=False).encode()) > NOTICE_BYTES
    assert len(notice_text(delivery).encode()) <= NOTICE_BYTES
    # Without its summary a notice is small, whatever the names: trimming always succeeds.
    assert len(notice_text(delivery, limit=9000).encode()) <= 9000


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_mail_is_delivered_byte_for_byte_with_a_valid_notice(name):
    sink, inner, queue, _ = announcing()
    raw = HOSTILE[name]
    blob = blob_name(A, "INBOX", 1, 1)
    assert sink.create(blob, raw, blob_metadata(A, "INBOX", 1, FetchedMessage(1, raw, WHEN)))
    assert inner.blobs[blob][0] == raw
    [text] = queue.messages
    text.encode("utf-8")  # no lone surrogates: any JSON reader accepts it
    notice = json.loads(text)
    assert notice["sha256"] == hashlib.sha256(raw).hexdigest()
    for attachment in notice["summary"]["attachments"] or []:
        assert "/" not in attachment["filename"] and "\\" not in attachment["filename"]


def test_eight_bit_and_unsafe_attachment_names_become_valid_safe_text():
    raw = multipart(
        ("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"..\\\\..\\\\\udcff\u202eevil.pdf\"",
         b"x"),
        ("Content-Type: text/plain\r\nContent-Disposition: attachment; filename=\"=?utf-8?q?R=C3=A9sum=C3=A9?= .txt\"",
         b"y"),
    )
    sink, _, queue, _ = announcing()
    sink.create(blob_name(A, "INBOX", 1, 1), raw, blob_metadata(A, "INBOX", 1, FetchedMessage(1, raw, WHEN)))
    names = [a["filename"] for a in json.loads(queue.messages[0])["summary"]["attachments"]]
    assert names == ["\ufffdevil.pdf", "Résumé .txt"]
