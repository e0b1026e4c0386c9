"""Delivering one IMAP folder: pipelined fetches and uploads, streamed large messages,
and a checkpoint that only moves over the contiguous prefix of delivered UIDs."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared import first_run
from shared.dedup import MessageDigest, dedup_key
from shared.errors import MailServerError
from shared.history_scope import ALL, FirstRunScope
from shared.model import Checkpoint, FetchedMessage, FolderResult, MessageInfo, PollOptions
from shared.naming import blob_metadata, blob_name, folder_prefix, streamed_metadata
from shared.ports import (
    CheckpointStore,
    Clock,
    MailSession,
    MessageSink,
    PollObserver,
    ThreadStart,
    no_thread_setup,
)
from shared.resync import OldDeliveries, load_old_deliveries

log = logging.getLogger("mailferry.poll")

# Batches fetched ahead of the oldest unfinished one: fetching overlaps uploading while
# memory stays bounded by this many batches.
PIPELINE_DEPTH = 2
# A batch also ends at this many bytes, so a run of large-ish messages stays bounded too.
BATCH_BYTES = 8 * 1024 * 1024
STREAM_CHUNK = 4 * 1024 * 1024
# _settle's size for a message that needs no write and is counted apart (skipped or gone).
_NOT_COUNTED = -1


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

    def __init__(self, session: MailSession, address: str, folder: str, *,
                 sink: MessageSink, checkpoints: CheckpointStore, options: PollOptions,
                 clock: Clock, result: FolderResult, deadline: float, watcher: PollObserver,
                 on_thread_start: ThreadStart = no_thread_setup,
                 scope: FirstRunScope = ALL) -> None:
        self.sink = sink
        self.checkpoints = checkpoints
        self.options = options
        self.clock = clock
        self.session = session
        self.address = address
        self.folder = folder
        self.result = result
        self.deadline = deadline
        self.watcher = watcher
        self.on_thread_start = on_thread_start
        self.scope = scope  # how much history a folder without a checkpoint takes
        self.old = OldDeliveries()
        # Internal dates of the messages handed to uploaders, for the lag metric.
        self.internal_dates: dict[int, datetime] = {}

    def run(self) -> None:
        state = self.session.select_folder(self.folder)
        store = self.checkpoints
        checkpoint = store.get_checkpoint(self.address, self.folder)
        if checkpoint is None or checkpoint.uidvalidity != state.uidvalidity:
            # A new folder, or a reset one: start over. After a reset, every message that
            # exists now may have been delivered under the old UIDVALIDITY: remember how
            # far that goes, so a run that dies halfway through the resync still checks.
            self.result.resynced = checkpoint is not None
            dedup_through = max(self._new_uids(0), default=0) if self.result.resynced else 0
            checkpoint = store.put_checkpoint(first_run.starting_checkpoint(Checkpoint(
                self.address, self.folder, state.uidvalidity, last_uid=0,
                dedup_through_uid=dedup_through, etag=checkpoint.etag if checkpoint else None),
                previous=checkpoint, scope=self.scope, session=self.session, now=self.clock.now()))
            if self.result.resynced:
                log.warning("%s/%s: UIDVALIDITY changed to %d; resyncing without duplicates",
                            self.address, self.folder, state.uidvalidity)
        uids = self._new_uids(checkpoint.last_uid)
        if not uids:
            return
        if checkpoint.last_uid < checkpoint.dedup_through_uid:
            self.old = load_old_deliveries(self.sink, self.session,
                                           folder_prefix(self.address, self.folder), checkpoint)
        uids = first_run.candidates(self.session, checkpoint, uids)
        infos = self.session.fetch_info(uids)
        # A UID the size FETCH said nothing about is fetched whole: the body FETCH decides
        # whether it is gone, never this silence.
        sized = {info.uid for info in infos}
        infos += [MessageInfo(uid, 0) for uid in uids if uid not in sized]
        checkpoint, infos = first_run.in_scope(checkpoint, infos, store)
        self._deliver_all(checkpoint, infos)

    def _new_uids(self, last_uid: int) -> list[int]:
        # `UID SEARCH UID n:*` always includes the highest UID, even when it is below n.
        return sorted(u for u in set(self.session.search_uids_from(last_uid + 1)) if u > last_uid)

    def _deliver_all(self, checkpoint: Checkpoint, infos: list[MessageInfo]) -> None:
        """Fetch batch after batch while earlier ones upload; checkpoint as the prefix grows."""
        options = self.options
        prefix = ContiguousPrefix(checkpoint.last_uid)
        pending: deque[_Batch] = deque()
        failure: BaseException | None = None
        with ThreadPoolExecutor(options.upload_concurrency, thread_name_prefix="upload",
                                initializer=self.on_thread_start) as pool:
            try:
                for group in plan_batches(sorted(infos, key=lambda i: i.uid),
                                          count=options.fetch_batch_size, size_limit=BATCH_BYTES,
                                          large=options.large_message_bytes):
                    if self.clock.monotonic() >= self.deadline:
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
        if len(group) == 1 and group[0].size >= self.options.large_message_bytes:
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
        prefix.expect([i.uid for i in group])
        # Messages expunged since the search are gone: nothing to deliver for them. One the
        # server still lists fails alone, so the checkpoint stops before it.
        missing = [i.uid for i in group if i.uid not in fetched]
        withheld = self._still_listed(missing)
        for uid in missing:
            if uid not in withheld:
                prefix.done(uid)
            else:
                failed: Future[tuple[bool, int]] = Future()
                failed.set_exception(self._withheld(uid))
                batch.futures.append((uid, failed))
        for message in messages:
            if (message.uid <= checkpoint.dedup_through_uid
                    and self.old.take(dedup_key(message.raw, message.internal_date),
                                      message.internal_date)):
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
        return self.sink.create(name, message.raw, metadata), len(message.raw)

    def _stream(self, checkpoint: Checkpoint, info: MessageInfo) -> tuple[bool, int]:
        """A large message in ranges, each staged as a block: memory stays bounded. Committed
        only when every range arrived; a message gone meanwhile is never committed."""
        name = blob_name(self.address, self.folder, checkpoint.uidvalidity, info.uid)
        sink = self.sink
        if sink.exists(name):
            return False, 0
        try:
            if info.uid <= checkpoint.dedup_through_uid and self.old:
                # Its key needs every byte: read it once without storing, then decide.
                seen = MessageDigest()
                for chunk in self._ranges(info.uid):
                    seen.update(chunk)
                if self.old.take(seen.dedup_key(info.internal_date), info.internal_date):
                    self.result.duplicates_skipped += 1
                    return False, _NOT_COUNTED
            digest = MessageDigest()

            def chunks() -> Iterator[bytes]:
                for chunk in self._ranges(info.uid):
                    digest.update(chunk)
                    yield chunk

            created = sink.create_from_chunks(name, chunks(), lambda: streamed_metadata(
                self.address, self.folder, checkpoint.uidvalidity, info, digest))
        except _Gone:
            if self._still_listed([info.uid]):
                raise self._withheld(info.uid) from None
            return False, _NOT_COUNTED
        return created, digest.size

    def _ranges(self, uid: int) -> Iterator[bytes]:
        """The message's bytes in ranges; raises _Gone when the server has no such message."""
        offset = 0
        while True:
            chunk = self.session.fetch_range(uid, offset, STREAM_CHUNK)
            if chunk is None:
                raise _Gone
            if len(chunk) > STREAM_CHUNK:
                raise MailServerError(
                    f"{self.address}/{self.folder}: the server sent {len(chunk)} bytes of UID "
                    f"{uid} for a range of {STREAM_CHUNK}; nothing was stored, the next run "
                    "tries again.")
            if chunk:
                yield chunk
            if len(chunk) < STREAM_CHUNK:  # a short range is the message's end
                return
            offset += len(chunk)

    def _still_listed(self, uids: list[int]) -> set[int]:
        """Those of ``uids`` (sent no data for) that the server still lists; the rest are gone."""
        if not uids:
            return set()
        still = set(uids) & set(self.session.search_uids_from(min(uids)))
        gone = [uid for uid in uids if uid not in still]
        if gone:
            log.info("%s/%s: UID(s) %s expunged during the poll; nothing to deliver",
                     self.address, self.folder, ", ".join(map(str, gone[:10])))
        return still

    def _withheld(self, uid: int) -> MailServerError:
        return MailServerError(
            f"{self.address}/{self.folder}: the server lists UID {uid} but sent no data for it; "
            "nothing was stored for it and the next run tries again.")

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
            elif size != _NOT_COUNTED:
                self.result.already_present += 1
        if failure is not None:
            raise failure

    def _save(self, checkpoint: Checkpoint, prefix: ContiguousPrefix) -> Checkpoint:
        if prefix.through <= checkpoint.last_uid:
            return checkpoint
        return self.checkpoints.put_checkpoint(replace(checkpoint, last_uid=prefix.through))


class _Gone(Exception):
    """Raised inside a streamed upload to abandon it: the server has no such message now."""
