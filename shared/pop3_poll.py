"""The POP3 poll: deliver every message of a maildrop not delivered before, by UIDL.

POP3 has no UIDs that only grow, so there is no "last UID" to advance: each run lists every
message with its unique id (UIDL) and delivers those whose digest is not in the checkpoint.
Exactly-once rests on the same three things as IMAP: blob names are deterministic (from the
UIDL), blob writes are create-only, and a digest enters the checkpoint only after its blob
exists. The checkpoint keeps only messages still in the maildrop, so it stays bounded by the
maildrop's size. Nothing is ever deleted from the server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from itertools import chain

from shared.dedup import MessageDigest
from shared.delivery import ConcurrentDelivery, Outcome, Written
from shared.first_run import pop3_starting_checkpoint
from shared.history_scope import ALL, FirstRunScope
from shared.model import FolderResult, Pop3Checkpoint
from shared.naming import pop3_blob_metadata, pop3_blob_name, pop3_streamed_metadata, uidl_digest
from shared.ports import (
    Clock,
    MessageSink,
    PollObserver,
    Pop3CheckpointStore,
    Pop3Session,
    ThreadStart,
    no_thread_setup,
)
from shared.time_box import TimeBox, TimeBoxedCalls

log = logging.getLogger("mailferry.poll")

# Retrieved messages waiting for an uploader, per upload thread: large ones stay bounded.
_WAITING_PER_UPLOADER = 2


class Pop3Poll:
    """Delivers one POP3 maildrop's new messages, batch by batch, checkpointing after each.

    ``run`` may be called again with a new session after the connection dropped: what was
    stored before the drop is in the checkpoint, and the rest is listed again.
    """

    def __init__(self, address: str, *, sink: MessageSink, checkpoints: Pop3CheckpointStore,
                 clock: Clock, time_box: TimeBox, observer: PollObserver, batch_size: int,
                 upload_concurrency: int, large_message_bytes: int,
                 result: FolderResult | None = None,
                 on_thread_start: ThreadStart = no_thread_setup, scope: FirstRunScope = ALL) -> None:
        self.address = address
        self.sink = sink
        self.checkpoints = checkpoints
        self.clock = clock
        self.time_box = time_box
        self.observer = observer
        self.batch_size = max(1, batch_size)
        self.upload_concurrency = max(1, upload_concurrency)
        self.large_message_bytes = large_message_bytes
        # Given by the caller, the counts survive a failure partway (for the health row).
        self.result = result or FolderResult("INBOX")
        self.on_thread_start = on_thread_start
        self.scope = scope  # how much of the maildrop a first poll takes

    def progress(self) -> str:
        """What is durable, for errors."""
        return f"{self.result.delivered} new message(s) delivered and checkpointed"

    def run(self, session: Pop3Session) -> FolderResult:
        """Deliver what is new; returns what was done (``complete`` False at the deadline)."""
        listed = session.list_uidls()
        listed_digests = {uidl_digest(uidl) for _, uidl in listed}
        stored = self.checkpoints.get_pop3_checkpoint(self.address)
        first = None if stored else pop3_starting_checkpoint(self.scope, self.address, listed_digests)
        if first is not None:  # the maildrop as it is counts as delivered
            self.checkpoints.put_pop3_checkpoint(first)
            return self.result
        checkpoint = stored or Pop3Checkpoint(self.address)
        # Messages gone from the maildrop leave the checkpoint: it stays bounded.
        delivered = set(checkpoint.delivered & listed_digests)
        new = [(number, uidl) for number, uidl in listed if uidl_digest(uidl) not in delivered]

        if not new:
            if stored is not None and frozenset(delivered) != checkpoint.delivered:
                self.checkpoints.put_pop3_checkpoint(replace(checkpoint, delivered=frozenset(delivered)))
            return self.result

        what = f"write the POP3 checkpoint of {self.address}"

        def save(checkpoint: Pop3Checkpoint) -> Pop3Checkpoint:
            moved = replace(checkpoint, delivered=frozenset(delivered))
            return calls.call(what, lambda: self.checkpoints.put_pop3_checkpoint(moved))

        with TimeBoxedCalls(self.clock, self.time_box.writes_end,
                            on_thread_start=self.on_thread_start) as calls, ConcurrentDelivery[str](
                self.sink, address=self.address, result=self.result, observer=self.observer,
                concurrency=self.upload_concurrency,
                on_stored=lambda uidl: delivered.add(uidl_digest(uidl)), clock=self.clock,
                waits_end=self.time_box.waits_end, on_thread_start=self.on_thread_start) as delivery:
            try:
                for start in range(0, len(new), self.batch_size):
                    if self.clock.monotonic() >= self.time_box.ends:
                        self.result.complete = False
                        log.warning("%s: time box reached with %d POP3 message(s) left; the next "
                                    "run resumes", self.address, len(new) - start)
                        break
                    self._retrieve(session, delivery, new[start:start + self.batch_size])
                    delivery.settle()
                    if delivery.failure is not None:
                        break
                    checkpoint = save(checkpoint)
            finally:
                # Whatever stopped the run, what was stored before it enters the checkpoint.
                delivery.settle()
                if frozenset(delivered) != checkpoint.delivered:
                    save(checkpoint)
        if delivery.failure is not None:
            raise delivery.failure
        return self.result

    def _retrieve(self, session: Pop3Session, delivery: ConcurrentDelivery[str],
                  batch: list[tuple[int, str]]) -> None:
        """Retrieve each message and upload it while the next one is read; a large one is
        streamed into its blob in this thread, so it is never whole in memory."""
        for number, uidl in batch:
            delivery.settle(leave=_WAITING_PER_UPLOADER * self.upload_concurrency)
            pieces = session.retrieve_pieces(number)
            with closing(pieces):  # a message left half read ends the session (see the port)
                first, whole = _first_bytes(pieces, self.large_message_bytes)
                if whole:
                    raw = b"".join(first)
                    delivery.upload(uidl, pop3_blob_name(self.address, uidl), raw,
                                    pop3_blob_metadata(self.address, uidl, raw))
                else:
                    delivery.done(uidl, self._stream(uidl, chain(first, pieces)))

    def _stream(self, uidl: str, pieces: Iterator[bytes]) -> Written:
        """Write one large message piece by piece; its blob exists only once every piece did."""
        digest = MessageDigest()

        def follow() -> Iterator[bytes]:
            for piece in pieces:
                digest.update(piece)
                yield piece

        created = self.sink.create_from_chunks(
            pop3_blob_name(self.address, uidl), follow(),
            lambda: pop3_streamed_metadata(self.address, uidl, digest),
            on_thread_start=self.on_thread_start)
        return Written(Outcome.CREATED if created else Outcome.PRESENT, digest.size)


def _first_bytes(pieces: Iterator[bytes], limit: int) -> tuple[list[bytes], bool]:
    """The first pieces, up to ``limit`` bytes or more; True when they are the whole message."""
    first: list[bytes] = []
    size = 0
    for piece in pieces:
        first.append(piece)
        size += len(piece)
        if size >= limit:
            return first, False
    return first, True


__all__ = ["Pop3Poll"]
