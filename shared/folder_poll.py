"""Delivering one IMAP folder: streamed fetches overlapping uploads, large messages in
ranges, and a checkpoint that only moves over the contiguous prefix of delivered UIDs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from shared import first_run
from shared.batching import BatchLimits, plan_batches
from shared.dedup import dedup_key
from shared.delivery import SKIPPED, ConcurrentDelivery, Outcome
from shared.errors import FailureKind, MailboxThrottled, MailferryError, MailServerError
from shared.folder_flow import FolderFlow, FolderTools
from shared.history_scope import ALL, FirstRunScope
from shared.model import Checkpoint, FolderResult, FolderState, MessageInfo
from shared.naming import blob_metadata, blob_name, folder_prefix
from shared.ports import MailSession
from shared.resync import OldDeliveries, load_old_deliveries
from shared.streamed import Gone, StreamedDelivery
from shared.time_box import TimeBox

log = logging.getLogger("mailferry.poll")

# A batch also ends at this many bytes, so a run of large-ish messages stays bounded too.
BATCH_BYTES = 8 * 1024 * 1024

# Told of a drop, with the first step of the next attempt to do on the new session early.
DropHandler = Callable[[MailServerError, Callable[[MailSession], object]], None]


class FolderPoll:
    """Delivers one folder's new messages, then checkpoints what is safely stored.

    ``run`` may be called again with a new session after the connection dropped: it resumes
    from the checkpoint and does not fetch again what this run already settled or is still
    storing. What a dropped attempt left uploading is settled by the next attempt, or by
    ``settle`` (the connection decides which); leaving the poll as a context settles it too.
    """

    def __init__(self, address: str, folder: str, tools: FolderTools, *, result: FolderResult,
                 time_box: TimeBox, limits: BatchLimits, scope: FirstRunScope = ALL,
                 on_dropped: DropHandler = lambda _error, _then: None) -> None:
        self.address = address
        self.folder = folder
        self.tools = tools
        self.result = result
        self.time_box = time_box
        self.limits = limits
        self.scope = scope  # how much history a folder without a checkpoint takes
        # Told of a drop at once, while what arrived before it is still being stored.
        self.on_dropped = on_dropped
        self._selected: tuple[MailSession, FolderState] | None = None  # early, on a new session
        self.uidvalidity: int | None = None
        self.old: OldDeliveries | None = None
        # UIDs this run settled (stored, present, skipped or gone), over every attempt.
        self.settled: set[int] = set()
        self.checkpointed = 0  # the last UID the stored checkpoint covers
        self.delivered_through = 0  # the contiguous prefix reached, checkpointed or not
        # What an attempt found to deliver, and the checkpoint as this run last stored it: a
        # reconnect goes on from them instead of asking the server and the table again.
        self._todo: list[MessageInfo] | None = None
        self._stored: Checkpoint | None = None
        self._flow: FolderFlow | None = None  # left running by a dropped attempt
        self._arrived = 0  # messages that arrived whole in this run, over every attempt

    def _select_early(self, session: MailSession) -> None:
        """The folder selected on the next session as soon as it opens (on its thread)."""
        self._selected = (session, session.select_folder(self.folder))

    def arrivals(self) -> int:
        """Messages that arrived whole so far: more since a drop means the link works."""
        return self._arrived

    def __enter__(self) -> FolderPoll:
        return self

    def __exit__(self, *_: object) -> None:
        self.settle()

    def progress(self) -> str:
        """What is durable, for errors: how far the folder is delivered and checkpointed."""
        if self.delivered_through > self.checkpointed:
            return (f"{self.folder}: delivered through UID {self.delivered_through}, "
                    f"checkpoint at UID {self.checkpointed}")
        return f"{self.folder}: delivered through UID {self.checkpointed}"

    def run(self, session: MailSession) -> None:
        """One attempt at the folder on ``session``. After a drop what arrived goes on
        uploading (see ``settle``); after any other failure the checkpoint is saved first."""
        early, self._selected = self._selected, None
        state = early[1] if early is not None and early[0] is session else \
            session.select_folder(self.folder)
        if state.uidvalidity != self.uidvalidity:
            # What an earlier attempt settled or planned is void (its uploads finish first).
            self.settle()
            self.settled, self.old, self._todo, self._stored = set(), None, None, None
            self.uidvalidity = state.uidvalidity
        if self._todo is not None and self._stored is not None:
            # A reconnect: the rest of the plan. A message expunged meanwhile is found gone
            # by its FETCH; one that arrived meanwhile waits for the next run, as it would.
            resume = self._stored
            self._deliver_all(session, resume, [i for i in self._todo if i.uid > resume.last_uid])
            return
        checkpoint = self._checkpoint(session, state)
        self.checkpointed = self.delivered_through = checkpoint.last_uid
        uids = _new_uids(session, checkpoint.last_uid)
        if not uids:
            return
        if self.old is None and checkpoint.last_uid < checkpoint.dedup_through_uid:
            self.old = load_old_deliveries(self.tools.sink, session,
                                           folder_prefix(self.address, self.folder), checkpoint)
        uids = first_run.candidates(session, checkpoint, uids)
        infos = session.fetch_info([uid for uid in uids if uid not in self.settled])
        # A UID the size FETCH said nothing about is fetched whole: the body FETCH decides
        # whether it is gone, never this silence. One settled before needs no size.
        sized = {info.uid for info in infos}
        infos += [MessageInfo(uid, 0) for uid in uids if uid not in sized]
        checkpoint, infos = first_run.in_scope(checkpoint, infos, self.tools.checkpoints)
        self.checkpointed = self.delivered_through = checkpoint.last_uid
        self._todo, self._stored = sorted(infos, key=lambda i: i.uid), checkpoint
        self._deliver_all(session, checkpoint, self._todo)

    def _checkpoint(self, session: MailSession, state: FolderState) -> Checkpoint:
        store = self.tools.checkpoints
        checkpoint = store.get_checkpoint(self.address, self.folder)
        if checkpoint is not None and checkpoint.uidvalidity == state.uidvalidity:
            return checkpoint
        # A new folder, or a reset one: start over. After a reset, every message that exists
        # now may have been delivered under the old UIDVALIDITY: remember how far that goes,
        # so a run that dies halfway through the resync still checks.
        resynced = checkpoint is not None
        self.result.resynced = self.result.resynced or resynced
        dedup_through = max(_new_uids(session, 0), default=0) if resynced else 0
        if resynced:
            log.warning("%s/%s: UIDVALIDITY changed to %d; resyncing without duplicates",
                        self.address, self.folder, state.uidvalidity)
        return store.put_checkpoint(first_run.starting_checkpoint(Checkpoint(
            self.address, self.folder, state.uidvalidity, last_uid=0,
            dedup_through_uid=dedup_through, etag=checkpoint.etag if checkpoint else None),
            previous=checkpoint, scope=self.scope, session=session, now=self.tools.clock.now()))

    def settle(self) -> None:
        """Let the uploads a dropped attempt left running finish, and save the checkpoint
        they reach (StorageError if storage failed them)."""
        flow, self._flow = self._flow, None
        if flow is not None:
            self._close(flow, None)

    def _deliver_all(self, session: MailSession, checkpoint: Checkpoint,
                     infos: list[MessageInfo]) -> None:
        """Fetch batch after batch while the one before uploads; checkpoint as the prefix grows.
        A drop leaves the uploads running (``settle`` or the next attempt finishes them)."""
        tools = self.tools
        flow, self._flow = self._flow or self._open_flow(checkpoint.last_uid), None
        delivery = flow.delivery
        failure: BaseException | None = None
        try:
            todo = [i for i in infos if i.uid not in flow.handed]
            for group in plan_batches(todo, self.limits, large=tools.options.large_message_bytes):
                if tools.clock.monotonic() >= self.time_box.ends:
                    self.result.complete = False
                    log.warning("%s/%s: time box reached; the next run resumes after UID %d",
                                self.address, self.folder, flow.prefix.through)
                    break
                before = delivery.pending
                self._start(session, flow, checkpoint, group)
                self.limits.arrived()
                delivery.settle(leave=delivery.pending - before)
                flow.save_soon()
                if delivery.failure is not None:
                    break
        except MailServerError as e:
            if e.kind is FailureKind.CONNECTION_DROPPED and delivery.failure is None:
                self.limits.dropped()
                self._flow = flow  # what arrived goes on uploading while the next session opens
                self.on_dropped(e, self._select_early)
                raise
            if isinstance(e, MailboxThrottled) and e.answered_at is None:
                e.answered_at = tools.clock.now()  # before the uploads settle
            failure = e
        except Exception as e:  # stop fetching, but keep what already landed
            failure = e
        self._close(flow, failure)

    def _open_flow(self, start: int) -> FolderFlow:
        return FolderFlow(self.tools, address=self.address, result=self.result,
                          time_box=self.time_box, start=start, stored=self._note_stored,
                          write=self._write,
                          what=f"write the checkpoint of {self.address}/{self.folder}")

    def _note_stored(self, uid: int, through: int) -> None:
        self.settled.add(uid)
        self.delivered_through = through

    def _close(self, flow: FolderFlow, failure: BaseException | None) -> None:
        flow.close(failure, where=f"{self.address}/{self.folder}")

    def _start(self, session: MailSession, flow: FolderFlow, checkpoint: Checkpoint,
               group: list[MessageInfo]) -> None:
        """Fetch one batch (streamed) and hand each message to the uploaders as it arrives;
        a drop leaves the rest of the batch to be fetched again."""
        delivery, handed = flow.delivery, flow.handed
        flow.prefix.expect([i.uid for i in group])
        todo = []
        for info in group:
            if info.uid in self.settled:
                delivery.done(info.uid, SKIPPED)
                handed.add(info.uid)
            else:
                todo.append(info)
        if len(todo) == 1 and todo[0].size >= self.tools.options.large_message_bytes:
            self._start_streamed(session, delivery, checkpoint, todo[0])
            handed.add(todo[0].uid)
            self._arrived += 1
            return
        received: set[int] = set()
        for message in session.fetch([i.uid for i in todo]):
            received.add(message.uid)
            handed.add(message.uid)
            self._arrived += 1
            if (self.old and message.uid <= checkpoint.dedup_through_uid
                    and self.old.take(dedup_key(message.raw, message.internal_date),
                                      message.internal_date)):
                self.result.duplicates_skipped += 1
                delivery.done(message.uid, SKIPPED)
                continue
            name = blob_name(self.address, self.folder, checkpoint.uidvalidity, message.uid)
            delivery.upload(message.uid, name, message.raw,
                            blob_metadata(self.address, self.folder, checkpoint.uidvalidity, message),
                            message.internal_date)
        # Messages expunged since the search are gone: nothing to deliver for them. One the
        # server still lists fails alone, so the checkpoint stops before it.
        missing = [i.uid for i in todo if i.uid not in received]
        withheld = _still_listed(session, missing, self.address, self.folder)
        for uid in missing:
            if uid in withheld:
                delivery.failed(uid, _withheld(self.address, self.folder, uid))
            else:
                delivery.done(uid, SKIPPED)
            handed.add(uid)

    def _start_streamed(self, session: MailSession, delivery: ConcurrentDelivery[int],
                        checkpoint: Checkpoint, info: MessageInfo) -> None:
        """A large message, streamed in this thread: the connection is not shared with uploaders."""
        streamed = StreamedDelivery(session, self.tools.sink, address=self.address,
                                    folder=self.folder, uidvalidity=checkpoint.uidvalidity,
                                    on_thread_start=self.tools.on_thread_start)
        name = blob_name(self.address, self.folder, checkpoint.uidvalidity, info.uid)
        old = self.old if info.uid <= checkpoint.dedup_through_uid else None
        try:
            written = streamed.deliver(name, info, old)
        except Gone:
            if _still_listed(session, [info.uid], self.address, self.folder):
                delivery.failed(info.uid, _withheld(self.address, self.folder, info.uid))
            else:
                delivery.done(info.uid, SKIPPED)
            return
        except MailferryError as e:
            if e.kind is FailureKind.CONNECTION_DROPPED:
                raise  # the session is gone: stop here and reconnect
            delivery.failed(info.uid, e)
            return
        if written.outcome is Outcome.SKIPPED:
            self.result.duplicates_skipped += 1
        delivery.done(info.uid, written, info.internal_date)

    def _write(self, through: int) -> None:
        """Move the stored checkpoint up to ``through``, when it is further (on the flow's
        checkpoint thread)."""
        stored = self._stored
        if stored is None or through <= stored.last_uid:
            return
        saved = self.tools.checkpoints.put_checkpoint(replace(stored, last_uid=through))
        if self._stored is stored:  # not voided meanwhile by a UIDVALIDITY change
            self._stored, self.checkpointed = saved, saved.last_uid


def _new_uids(session: MailSession, last_uid: int) -> list[int]:
    # `UID SEARCH UID n:*` always includes the highest UID, even when it is below n.
    return sorted(u for u in set(session.search_uids_from(last_uid + 1)) if u > last_uid)


def _still_listed(session: MailSession, uids: list[int], address: str, folder: str) -> set[int]:
    """Those of ``uids`` (sent no data for) that the server still lists; the rest are gone."""
    if not uids:
        return set()
    still = set(uids) & set(session.search_uids_from(min(uids)))
    gone = [uid for uid in uids if uid not in still]
    if gone:
        log.info("%s/%s: UID(s) %s expunged during the poll; nothing to deliver",
                 address, folder, ", ".join(map(str, gone[:10])))
    return still


def _withheld(address: str, folder: str, uid: int) -> MailServerError:
    return MailServerError(
        f"{address}/{folder}: the server lists UID {uid} but sent no data for it; "
        "nothing was stored for it and the next run tries again.")
