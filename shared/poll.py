"""The poll algorithm: for each mailbox and folder, deliver what is new, then checkpoint.

Exactly-once rests on three things: blob names are deterministic, blob writes are
create-only, and a checkpoint only moves past UIDs whose blobs exist. A run that dies
anywhere is repaired by the next one: it re-reads from the checkpoint and finds the
blobs it already wrote.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from shared.errors import MailferryError
from shared.model import (
    Checkpoint,
    FetchedMessage,
    FolderResult,
    MailboxResult,
    PollReport,
    Secret,
)
from shared.naming import blob_metadata, blob_name, dedup_key, folder_prefix, uidvalidity_of
from shared.ports import (
    CheckpointStore,
    Clock,
    HealthStore,
    MailServer,
    MailSession,
    MessageSink,
    PollObserver,
    Pop3CheckpointStore,
    Pop3Server,
    TokenSource,
)
from shared.settings import MailboxConfig

log = logging.getLogger("mailferry.poll")

FAILURE_LOG_TEXT = "mailbox poll failed"


@dataclass(frozen=True)
class PollOptions:
    """How one poll behaves; from settings."""

    max_concurrent_mailboxes: int = 4
    fetch_batch_size: int = 100
    upload_concurrency: int = 8
    deadline_seconds: float = 480.0


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class SilentObserver:
    """Hears nothing."""

    def mailbox_started(self, address: str) -> None:
        pass

    def message_delivered(self, address: str, size: int) -> None:
        pass

    def mailbox_finished(self, result: MailboxResult) -> None:
        pass


@dataclass
class Poller:
    """Everything a poll needs, wired once per process."""

    tokens: TokenSource
    server: MailServer
    sink: MessageSink
    checkpoints: CheckpointStore
    health: HealthStore
    options: PollOptions
    clock: Clock
    pop3: Pop3Server | None = None
    pop3_checkpoints: Pop3CheckpointStore | None = None

    def run(
        self, mailboxes: Sequence[MailboxConfig], observer: PollObserver | None = None
    ) -> PollReport:
        """Poll every mailbox with bounded concurrency; one failing never stops the others."""
        watcher = observer or SilentObserver()
        started = self.clock.monotonic()
        deadline = started + self.options.deadline_seconds
        try:
            token = self.tokens.get_token()
        except MailferryError as e:
            results = [self._failed(m.address, e, 0.0) for m in mailboxes]
            for result in results:
                self._record(result)
                watcher.mailbox_finished(result)
            return PollReport(results, self.clock.monotonic() - started)

        workers = max(1, min(self.options.max_concurrent_mailboxes, len(mailboxes)))
        with ThreadPoolExecutor(workers, thread_name_prefix="mailbox") as pool:
            results = list(pool.map(lambda m: self._poll_mailbox(m, token, deadline, watcher),
                                    mailboxes))
        return PollReport(results, self.clock.monotonic() - started)

    def _poll_mailbox(
        self, mailbox: MailboxConfig, token: Secret, deadline: float, watcher: PollObserver
    ) -> MailboxResult:
        started = self.clock.monotonic()
        watcher.mailbox_started(mailbox.address)
        result = MailboxResult(mailbox.address)
        try:
            if mailbox.protocol == "pop3":
                result.folders.append(self._poll_pop3(mailbox.address, token, deadline, watcher))
            else:
                self._poll_imap(mailbox, token, deadline, watcher, result)
        except MailferryError as e:
            result = self._failed(mailbox.address, e, 0.0, folders=result.folders)
        except Exception as e:  # a bug or an unmapped library error must not stop the others
            log.exception("unexpected error while polling %s", mailbox.address)
            result = self._failed(mailbox.address, e, 0.0, folders=result.folders)
        result.seconds = self.clock.monotonic() - started
        self._record(result)
        watcher.mailbox_finished(result)
        return result

    def _poll_imap(self, mailbox: MailboxConfig, token: Secret, deadline: float,
                   watcher: PollObserver, result: MailboxResult) -> None:
        with self.server.open(mailbox.address, token) as session:
            for folder in mailbox.folders:
                folder_result = FolderResult(folder)
                result.folders.append(folder_result)
                FolderPoll(self, session, mailbox.address, folder, folder_result,
                           deadline, watcher).run()
                if not folder_result.complete:
                    break

    def _poll_pop3(self, address: str, token: Secret, deadline: float,
                   watcher: PollObserver) -> FolderResult:
        """POP3 sees the Inbox only; see pop3_poll."""
        raise NotImplementedError("POP3 mailboxes are not supported yet")

    def _failed(self, address: str, error: Exception, seconds: float,
                folders: list[FolderResult] | None = None) -> MailboxResult:
        log.error("%s: %s: %s: %s", FAILURE_LOG_TEXT, address, type(error).__name__, error)
        return MailboxResult(address, folders or [], seconds, str(error), type(error).__name__)

    def _record(self, result: MailboxResult) -> None:
        try:
            self.health.record_result(result, at=self.clock.now())
        except MailferryError as e:
            log.warning("could not record health of %s: %s", result.address, e)


class FolderPoll:
    """Delivers one folder's new messages, batch by batch, checkpointing after each."""

    def __init__(self, poller: Poller, session: MailSession, address: str, folder: str,
                 result: FolderResult, deadline: float, watcher: PollObserver) -> None:
        self.poller = poller
        self.session = session
        self.address = address
        self.folder = folder
        self.result = result
        self.deadline = deadline
        self.watcher = watcher
        self.known_keys: set[str] = set()

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
        if checkpoint.last_uid < checkpoint.dedup_through_uid:
            self.known_keys = self._keys_from_other_uidvalidity(state.uidvalidity)

        batch_size = self.poller.options.fetch_batch_size
        for start in range(0, len(uids), batch_size):
            if self.poller.clock.monotonic() >= self.deadline:
                self.result.complete = False
                log.warning("%s/%s: time box reached; the next run resumes after UID %d",
                            self.address, self.folder, checkpoint.last_uid)
                return
            batch = uids[start:start + batch_size]
            self._deliver(checkpoint, self.session.fetch(batch))
            checkpoint = store.put_checkpoint(replace(checkpoint, last_uid=batch[-1]))

    def _new_uids(self, last_uid: int) -> list[int]:
        # `UID SEARCH UID n:*` always includes the highest UID, even when it is below n.
        return sorted(u for u in set(self.session.search_uids_from(last_uid + 1)) if u > last_uid)

    def _keys_from_other_uidvalidity(self, uidvalidity: int) -> set[str]:
        prefix = folder_prefix(self.address, self.folder)
        return {key for name, key in self.poller.sink.list_dedup_keys(prefix)
                if uidvalidity_of(name, prefix) not in (None, uidvalidity)}

    def _deliver(self, checkpoint: Checkpoint, messages: list[FetchedMessage]) -> None:
        to_write: list[FetchedMessage] = []
        for message in messages:
            if (message.uid <= checkpoint.dedup_through_uid
                    and dedup_key(message.raw, message.internal_date) in self.known_keys):
                self.result.duplicates_skipped += 1
            else:
                to_write.append(message)
        sink = self.poller.sink

        def write(message: FetchedMessage) -> bool:
            name = blob_name(self.address, self.folder, checkpoint.uidvalidity, message.uid)
            metadata = blob_metadata(self.address, self.folder, checkpoint.uidvalidity, message)
            return sink.create(name, message.raw, metadata)

        workers = max(1, min(self.poller.options.upload_concurrency, len(to_write)))
        with ThreadPoolExecutor(workers, thread_name_prefix="upload") as pool:
            # list() waits for every upload and re-raises the first failure, so the
            # checkpoint below never passes a message whose blob is missing.
            outcomes = list(pool.map(write, to_write))
        for message, created in zip(to_write, outcomes, strict=True):
            if created:
                self.result.delivered += 1
                self.result.bytes_delivered += len(message.raw)
                self.watcher.message_delivered(self.address, len(message.raw))
            else:
                self.result.already_present += 1


__all__ = ["FAILURE_LOG_TEXT", "PollOptions", "Poller", "SystemClock"]
