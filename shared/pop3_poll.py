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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace

from shared.first_run import pop3_starting_checkpoint
from shared.history_scope import ALL, FirstRunScope
from shared.model import FolderResult, Pop3Checkpoint
from shared.naming import pop3_blob_metadata, pop3_blob_name, uidl_digest
from shared.ports import (
    Clock,
    MessageSink,
    PollObserver,
    Pop3CheckpointStore,
    Pop3Session,
    ThreadStart,
    no_thread_setup,
)

log = logging.getLogger("mailferry.poll")

class Pop3Poll:
    """Delivers one POP3 maildrop's new messages, batch by batch, checkpointing after each."""

    def __init__(self, session: Pop3Session, address: str, *, sink: MessageSink,
                 checkpoints: Pop3CheckpointStore, clock: Clock, deadline: float,
                 watcher: PollObserver, batch_size: int, upload_concurrency: int,
                 result: FolderResult | None = None,
                 on_thread_start: ThreadStart = no_thread_setup,
                 scope: FirstRunScope = ALL) -> None:
        self.session = session
        self.address = address
        self.sink = sink
        self.checkpoints = checkpoints
        self.clock = clock
        self.deadline = deadline
        self.watcher = watcher
        self.batch_size = max(1, batch_size)
        self.upload_concurrency = max(1, upload_concurrency)
        # Given by the caller, the counts survive a failure partway (for the health row).
        self.result = result or FolderResult("INBOX")
        self.on_thread_start = on_thread_start
        self.scope = scope  # how much of the maildrop a first poll takes

    def run(self) -> FolderResult:
        """Deliver what is new; returns what was done (``complete`` False at the deadline)."""
        listed = self.session.list_uidls()
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

        for start in range(0, len(new), self.batch_size):
            if self.clock.monotonic() >= self.deadline:
                self.result.complete = False
                log.warning("%s: time box reached with %d POP3 message(s) left; the next run "
                            "resumes", self.address, len(new) - start)
                return self.result
            batch = new[start:start + self.batch_size]
            self._deliver(batch)
            delivered.update(uidl_digest(uidl) for _, uidl in batch)
            checkpoint = self.checkpoints.put_pop3_checkpoint(
                replace(checkpoint, delivered=frozenset(delivered)))
        return self.result

    def _deliver(self, batch: list[tuple[int, str]]) -> None:
        """Retrieve each message and upload it while the next one is read."""
        workers = min(self.upload_concurrency, len(batch))
        pending: set[Future[bool]] = set()
        outcomes: list[tuple[Future[bool], int]] = []
        with ThreadPoolExecutor(workers, thread_name_prefix="upload",
                                initializer=self.on_thread_start) as pool:
            for number, uidl in batch:
                # At most two uploads per worker wait in memory: large messages stay bounded.
                while len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()  # a failed upload stops the batch here
                raw = self.session.retrieve(number)
                future = pool.submit(self.sink.create, pop3_blob_name(self.address, uidl), raw,
                                     pop3_blob_metadata(self.address, uidl, raw))
                pending.add(future)
                outcomes.append((future, len(raw)))
        # result() re-raises the first failed upload, so the checkpoint written after this
        # batch never holds a message whose blob is missing.
        for future, size in outcomes:
            if future.result():
                self.result.delivered += 1
                self.result.bytes_delivered += size
                self.watcher.message_delivered(self.address, size)
            else:
                self.result.already_present += 1


__all__ = ["Pop3Poll"]
