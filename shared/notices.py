"""A MessageSink that describes each message and announces it once its blob exists.

Wrapped around the blob sink, it leaves the delivery itself alone: the summary goes into
the blob's metadata (``shared.notice_document``), then — whether the blob was just written
or already there from a run that died before its notice — the notice is sent (and, with
SUMMARY_BLOBS, the summary document written). Only then does the write count as done, so
the checkpoint never passes a message whose notice was not sent: at least once, with an
``id`` stable per blob for consumers to drop repeats. Uploads run concurrently, so notices
follow delivery order only roughly; consumers order by UID.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping

from shared.notice_document import (
    Delivery,
    described_metadata,
    notice_document,
    notice_text,
    summary_blob_name,
)
from shared.ports import DeliveredBlobs, MessageSink, NoticeQueue, ThreadStart, no_thread_setup
from shared.summary import MessageSummary, summarize

log = logging.getLogger("mailferry.notices")

# What of a streamed message is kept for its summary: the header section is at its start.
HEAD_BYTES = 64 * 1024


class AnnouncingSink:
    """A MessageSink over another: summary in the metadata, then a notice per stored blob."""

    def __init__(self, inner: MessageSink, delivered: DeliveredBlobs, *, container: str,
                 container_url: str, queue: NoticeQueue | None, summary_blobs: bool) -> None:
        self._inner = inner
        self._delivered = delivered
        self._container = container
        self._container_url = container_url.rstrip("/")
        self._queue = queue
        self._summary_blobs = summary_blobs

    def create(self, name: str, raw: bytes, metadata: Mapping[str, str]) -> bool:
        summary = _summary(raw, head_only=False)
        sha256 = hashlib.sha256(raw).hexdigest()
        described = described_metadata(metadata, summary, sha256)
        created = self._inner.create(name, raw, described)
        # Also when the blob was there already: its notice may never have been sent.
        self._announce(name, described, len(raw), sha256, summary)
        return created

    def create_from_chunks(self, name: str, chunks: Iterable[bytes],
                           metadata: Callable[[], Mapping[str, str]], *,
                           on_thread_start: ThreadStart = no_thread_setup) -> bool:
        reading = _Reading()
        described: dict[str, str] = {}

        def describe() -> Mapping[str, str]:
            described.update(described_metadata(metadata(), reading.summary(), reading.sha256()))
            return described

        created = self._inner.create_from_chunks(name, reading.follow(chunks), describe,
                                                 on_thread_start=on_thread_start)
        if reading.complete:
            self._announce(name, described or described_metadata(
                metadata(), reading.summary(), reading.sha256()),
                reading.size, reading.sha256(), reading.summary())
        else:  # the sink found the blob before reading every piece
            self._announce_stored(name)
        return created

    def exists(self, name: str) -> bool:
        found = self._inner.exists(name)
        if found:
            # Asked before streaming a large message: a blob already there may be one whose
            # run died before its notice went out, so it is announced again from storage.
            self._announce_stored(name)
        return found

    def list_dedup_keys(self, prefix: str) -> Iterator[tuple[str, str]]:
        return self._inner.list_dedup_keys(prefix)

    def _announce_stored(self, name: str) -> None:
        """Announce a blob already in storage, from its metadata and its first bytes."""
        size, metadata = self._delivered.get_size_and_metadata(name)
        head = b"".join(self._delivered.read(name, length=HEAD_BYTES))
        sha256 = metadata.get("sha256")
        if not sha256:  # written before notices existed: read it through once
            digest = hashlib.sha256()
            for chunk in self._delivered.read(name):
                digest.update(chunk)
            sha256 = digest.hexdigest()
        summary = _summary(head, head_only=size > len(head))
        self._announce(name, metadata, size, sha256, summary)

    def _announce(self, name: str, metadata: Mapping[str, str], size: int, sha256: str,
                  summary: MessageSummary) -> None:
        delivery = Delivery(self._container, self._container_url, name, metadata, size, sha256,
                            summary, summary_blob_name(name) if self._summary_blobs else None)
        if self._summary_blobs:
            self._delivered.create_json(summary_blob_name(name),
                                        json.dumps(notice_document(delivery), ensure_ascii=False))
        if self._queue is not None:
            self._queue.send(notice_text(delivery))


class _Reading:
    """Follows a streamed message's pieces: its size, SHA-256 and first bytes."""

    def __init__(self) -> None:
        self.size = 0
        self.complete = False
        self._digest = hashlib.sha256()
        self._head = bytearray()
        self._summary: MessageSummary | None = None

    def follow(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.size += len(chunk)
            self._digest.update(chunk)
            if len(self._head) < HEAD_BYTES:
                self._head += chunk[:HEAD_BYTES - len(self._head)]
            yield chunk
        self.complete = True

    def sha256(self) -> str:
        return self._digest.hexdigest()

    def summary(self) -> MessageSummary:
        """The summary of what was read (its head only, for a message longer than that)."""
        if self._summary is None:
            self._summary = _summary(bytes(self._head), head_only=self.size > len(self._head))
        return self._summary


def _summary(raw: bytes, *, head_only: bool) -> MessageSummary:
    """The message's summary; an empty, partial one if describing it failed (never the delivery)."""
    try:
        return summarize(raw, head_only=head_only)
    except Exception:  # summarize is built not to raise; the delivery must not depend on it
        log.warning("could not summarise a message; its notice carries an empty summary",
                    exc_info=True)
        return MessageSummary(attachments=None, partial=True)


__all__ = ["HEAD_BYTES", "AnnouncingSink"]
