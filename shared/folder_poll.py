"""Delivering one IMAP folder: pipelined fetches and uploads, streamed large messages,
and a checkpoint that only moves over the contiguous prefix of delivered UIDs."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from shared.model import Checkpoint, FetchedMessage, FolderResult, MessageInfo
from shared.naming import (
    blob_metadata,
    blob_name,
    dedup_key,
    folder_prefix,
    metadata_for_head,
    uidvalidity_of,
)
from shared.ports import MailSession, PollObserver, ThreadStart, no_thread_setup

if TYPE_CHECKING:
    from shared.poll import Poller

log = logging.getLogger("mailferry.poll")

# Batches fetched ahead of the oldest unfinished one: fetching overlaps uploading while
# memory stays bounded by this many batches.
PIPELINE_DEPTH = 2
# A batch also ends at this many bytes, so a run of large-ish messages stays bounded too.
BATCH_BYTES = 8 * 1024 * 1024
STREAM_CHUNK = 4 * 1024 * 1024
# Headers are read from the start of a streamed message; they fit in far less.
HEAD_BYTES = 256 * 1024


class ContiguousPrefix:
    """The highest UID at or below which every UID of this run is delivered."""

    def __init__(self, start: int) -> None:
        self.through = start
        self._waiting: deque[int] = deque()
        self._done: set[int] = set()

    def expect(self, uids: Sequence[int]) -> None:
        """UIDs handed out for delivery, in ascending order."""
        self._waiting.extend(uids)

    def done(self, uid: int) -> None:
        self._done.add(uid)
        while self._waiting and self._waiting[0] in self._done:
            self._done.discard(self._waiting[0])
            self.through = self._waiting.popleft()


@dataclass
class _Batch:
    """Messages handed to the uploaders together; settled in order."""

    futures: list[tuple[int, Future[tuple[bool, int]]]] = field(default_factory=list)


def plan_batches(infos: Sequence[MessageInfo], *, count: int, size_limit: int,
                 large: int) -> Iterator[list[MessageInfo]]:
    """Group messages for fetching: at most ``count`` each and about ``size_limit`` bytes;
    a message of ``large`` bytes or more goes alone (it is streamed)."""
    batch: list[MessageInfo] = []
    total = 0
    for info in infos:
        if info.size >= large:
            if batch:
                yield batch
                batch, total = [], 0
            yield [info]
            continue
        if batch and (len(batch) >= count or total + info.size > size_limit):
            yield batch
            batch, total = [], 0
        batch.append(info)
        total += info.size
    if batch:
        yield batch


class FolderPoll:
    """Delivers one folder's new messages, then checkpoints what is safely stored."""

    def __init__(self, poller: Poller, session: MailSession, address: str, folder: str,
                 result: FolderResult, deadline: float, watcher: PollObserver,
                 on_thread_start: ThreadStart = no_thread_setup) -> None:
        self.poller = poller
        self.session = session
        self.address = address
        self.folder = folder
        self.result = result
        self.deadline = deadline
        self.watcher = watcher
        self.on_thread_start = on_thread_start
        self.known_keys: set[str] = set()
        # Internal dates of the messages handed to uploaders, for the lag metric.
        self.internal_dates: dict[int, datetime] = {}

    def run(self) -> None:
        state = self.session.select_folder(self.folder)
        store = self.poller.checkpoints
        checkpoint = store.get_checkpoint(self.address, self.folder)
        if checkpoint is None or checkpoint.uidvalidity != state.uidvalidity:
            # A new folder, or a reset one: start over. After a reset, every message that
            # exists now may have been delivered under the old UIDVALIDITY: remember how
            # far that goes, so a run that dies halfway through the resync still checks.
            self.result.resynced = checkpoint is not None
            dedup_through = max(self._new_uids(0), default=0) if self.result.resynced else 0
            checkpoint = store.put_checkpoint(Checkpoint(
                self.address, self.folder, state.uidvalidity, last_uid=0,
                dedup_through_uid=dedup_through, etag=checkpoint.etag if checkpoint else None))
            if self.result.resynced:
                log.warning("%s/%s: UIDVALIDITY changed to %d; resyncing without duplicates",
                            self.address, self.folder, state.uidvalidity)
        uids = self._new_uids(checkpoint.last_uid)
        if not uids:
            return
        if checkpoint.last_uid < checkpoint.dedup_through_uid:
            self.known_keys = self._keys_from_other_uidvalidity(state.uidvalidity)
        self._deliver_all(checkpoint, self.session.fetch_info(uids))

    def _new_uids(self, last_uid: int) -> list[int]:
        # `UID SEARCH UID n:*` always includes the highest UID, even when it is below n.
        return sorted(u for u in set(self.session.search_uids_from(last_uid + 1)) if u > last_uid)

    def _keys_from_other_uidvalidity(self, uidvalidity: int) -> set[str]:
        prefix = folder_prefix(self.address, self.folder)
        return {key for name, key in self.poller.sink.list_dedup_keys(prefix)
                if uidvalidity_of(name, prefix) not in (None, uidvalidity)}

    def _deliver_all(self, checkpoint: Checkpoint, infos: list[MessageInfo]) -> None:
        """Fetch batch after batch while earlier ones upload; checkpoint as the prefix grows."""
        options = self.poller.options
        prefix = ContiguousPrefix(checkpoint.last_uid)
        pending: deque[_Batch] = deque()
        failure: BaseException | None = None
        with ThreadPoolExecutor(options.upload_concurrency, thread_name_prefix="upload",
                                initializer=self.on_thread_start) as pool:
            try:
                for group in plan_batches(sorted(infos, key=lambda i: i.uid),
                                          count=options.fetch_batch_size, size_limit=BATCH_BYTES,
                                          large=options.large_message_bytes):
                    if self.poller.clock.monotonic() >= self.deadline:
                        self.result.complete = False
                        log.warning("%s/%s: time box reached; the next run resumes after UID %d",
                                    self.address, self.folder, prefix.through)
                        break
                    while len(pending) >= PIPELINE_DEPTH:
                        self._settle(pending.popleft(), prefix)
                        checkpoint = self._save(checkpoint, prefix)
                    pending.append(self._start(pool, checkpoint, group, prefix))
            except BaseException as e:  # stop fetching, but keep what already landed
                failure = e
            # Every upload finishes (or fails) before the checkpoint moves past it.
            while pending:
                try:
                    self._settle(pending.popleft(), prefix)
                except BaseException as e:
                    failure = failure or e
        self._save(checkpoint, prefix)
        if failure is not None:
            raise failure

    def _start(self, pool: ThreadPoolExecutor, checkpoint: Checkpoint, group: list[MessageInfo],
               prefix: ContiguousPrefix) -> _Batch:
        batch = _Batch()
        if len(group) == 1 and group[0].size >= self.poller.options.large_message_bytes:
            info = group[0]
            prefix.expect([info.uid])
            if info.internal_date is not None:
                self.internal_dates[info.uid] = info.internal_date
            # Streamed in this thread: the IMAP connection is not shared with uploaders.
            outcome: Future[tuple[bool, int]] = Future()
            try:
                outcome.set_result(self._stream(checkpoint, info))
            except Exception as e:
                outcome.set_exception(e)
            batch.futures.append((info.uid, outcome))
            return batch
        messages = self.session.fetch([i.uid for i in group])
        fetched = {m.uid for m in messages}
        # Messages expunged since the search are gone: nothing to deliver for them.
        prefix.expect([i.uid for i in group])
        for info in group:
            if info.uid not in fetched:
                prefix.done(info.uid)
        for message in messages:
            if (message.uid <= checkpoint.dedup_through_uid
                    and dedup_key(message.raw, message.internal_date) in self.known_keys):
                self.result.duplicates_skipped += 1
                prefix.done(message.uid)
                continue
            if message.internal_date is not None:
                self.internal_dates[message.uid] = message.internal_date
            batch.futures.append((message.uid, pool.submit(self._write, checkpoint, message)))
        return batch

    def _write(self, checkpoint: Checkpoint, message: FetchedMessage) -> tuple[bool, int]:
        name = blob_name(self.address, self.folder, checkpoint.uidvalidity, message.uid)
        metadata = blob_metadata(self.address, self.folder, checkpoint.uidvalidity, message)
        return self.poller.sink.create(name, message.raw, metadata), len(message.raw)

    def _stream(self, checkpoint: Checkpoint, info: MessageInfo) -> tuple[bool, int]:
        """A large message in ranges, each staged as a block: memory stays bounded."""
        name = blob_name(self.address, self.folder, checkpoint.uidvalidity, info.uid)
        sink = self.poller.sink
        if sink.exists(name):
            return False, 0
        head = bytearray()
        total = 0

        def chunks() -> Iterator[bytes]:
            nonlocal total
            offset = 0
            while True:
                chunk = self.session.fetch_range(info.uid, offset, STREAM_CHUNK)
                if not chunk:
                    return
                if offset == 0:
                    head.extend(chunk[:HEAD_BYTES])
                    if (info.uid <= checkpoint.dedup_through_uid
                            and dedup_key(bytes(head), info.internal_date) in self.known_keys):
                        raise _AlreadyDelivered
                total += len(chunk)
                offset += len(chunk)
                yield chunk
                if len(chunk) < STREAM_CHUNK:
                    return

        def metadata() -> dict[str, str]:
            return metadata_for_head(self.address, self.folder, checkpoint.uidvalidity,
                                     info, bytes(head), total)

        try:
            created = sink.create_from_chunks(name, chunks(), metadata)
        except _AlreadyDelivered:
            self.result.duplicates_skipped += 1
            return False, -1
        return created, total

    def _settle(self, batch: _Batch, prefix: ContiguousPrefix) -> None:
        """Wait for a batch's uploads; count them; raise the first failure."""
        failure: BaseException | None = None
        for uid, future in batch.futures:
            try:
                created, size = future.result()
            except BaseException as e:
                failure = failure or e
                continue
            prefix.done(uid)
            internal_date = self.internal_dates.pop(uid, None)
            if created:
                self.result.delivered += 1
                self.result.bytes_delivered += size
                newest = self.result.newest_internal_date
                if internal_date is not None and (newest is None or internal_date > newest):
                    self.result.newest_internal_date = internal_date
                self.watcher.message_delivered(self.address, size)
            elif size >= 0:
                self.result.already_present += 1
        if failure is not None:
            raise failure

    def _save(self, checkpoint: Checkpoint, prefix: ContiguousPrefix) -> Checkpoint:
        if prefix.through <= checkpoint.last_uid:
            return checkpoint
        return self.poller.checkpoints.put_checkpoint(replace(checkpoint, last_uid=prefix.through))


class _AlreadyDelivered(Exception):
    """Raised inside a streamed upload to abandon it: found under an old UIDVALIDITY."""
