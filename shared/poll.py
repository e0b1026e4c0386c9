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
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.after_delivery import act_after_delivery
from shared.delivery_actions import KEEP, Action
from shared.errors import CheckpointConflict, FolderUnavailable, MailferryError
from shared.folder_poll import FolderPoll
from shared.mailbox_list import MailboxConfig
from shared.mailbox_plan import plan_mailbox
from shared.metrics import mailbox_metrics, metrics_message
from shared.model import (
    FolderResult,
    MailboxResult,
    PollOptions,
    PollReport,
    Secret,
)
from shared.pop3_deletes import delete_delivered
from shared.pop3_poll import Pop3Poll
from shared.ports import (
    ActionStateStore,
    CheckpointStore,
    Clock,
    HealthStore,
    MailServer,
    MessageSink,
    PollObserver,
    Pop3CheckpointStore,
    Pop3Server,
    ThreadStart,
    TokenSource,
    no_thread_setup,
)

log = logging.getLogger("mailferry.poll")
metrics_log = logging.getLogger("mailferry.metrics")

FAILURE_LOG_TEXT = "mailbox poll failed"
# A folder that cannot be opened: logged apart from whole-mailbox failures, as the others
# in the mailbox were still delivered.
FOLDER_FAILURE_LOG_TEXT = "folder poll failed"
TIME_BOX_SKIP = "the run's time box was spent before this mailbox was reached"




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
    # Where the after-delivery phase keeps its rows (needed unless AFTER_DELIVERY is keep).
    action_states: ActionStateStore | None = None

    def run(
        self, mailboxes: Sequence[MailboxConfig], observer: PollObserver | None = None, *,
        on_thread_start: ThreadStart = no_thread_setup,
    ) -> PollReport:
        """Poll every mailbox with bounded concurrency; one failing never stops the others.

        ``on_thread_start`` runs first in every thread the poll starts.
        """
        watcher = observer or SilentObserver()
        started = self.clock.monotonic()
        deadline = started + self.options.deadline_seconds
        try:
            token = self.tokens.get_token()
        except MailferryError as e:
            results = [self._failed(m.address, e) for m in mailboxes]
            for result in results:
                self._record(result)
                watcher.mailbox_finished(result)
            return PollReport(results, self.clock.monotonic() - started)

        workers = max(1, min(self.options.max_concurrent_mailboxes, len(mailboxes)))
        with ThreadPoolExecutor(workers, thread_name_prefix="mailbox",
                                initializer=on_thread_start) as pool:
            results = list(pool.map(
                lambda m: self._poll_mailbox(m, token, deadline, watcher, on_thread_start),
                self._least_recently_polled_first(mailboxes)))
        unreached = [r for r in results if r.skipped == TIME_BOX_SKIP]
        if unreached:
            log.warning("time box reached before %d of %d mailboxes were polled; they go first "
                        "next run. If this repeats, raise MAX_CONCURRENT_MAILBOXES or use "
                        "POLL_MODE=fanout", len(unreached), len(results))
        return PollReport(results, self.clock.monotonic() - started)

    def _least_recently_polled_first(
            self, mailboxes: Sequence[MailboxConfig]) -> list[MailboxConfig]:
        """Mailboxes a time-boxed run did not reach go first in the next one."""
        if len(mailboxes) <= self.options.max_concurrent_mailboxes:
            return list(mailboxes)  # all start at once: order does not matter
        try:
            attempted = {h.mailbox.lower(): h.last_attempt_at for h in self.health.list_health()}
        except MailferryError as e:
            log.warning("could not read mailbox health to order the run: %s", e)
            return list(mailboxes)
        never = datetime.min.replace(tzinfo=UTC)
        return sorted(mailboxes, key=lambda m: attempted.get(m.address.lower()) or never)

    def _poll_mailbox(
        self, mailbox: MailboxConfig, token: Secret, deadline: float, watcher: PollObserver,
        on_thread_start: ThreadStart,
    ) -> MailboxResult:
        started = self.clock.monotonic()
        if started >= deadline:
            # Not even a login once the time box is spent: the run must end on time.
            return MailboxResult(mailbox.address, skipped=TIME_BOX_SKIP)
        watcher.mailbox_started(mailbox.address)
        result = MailboxResult(mailbox.address)
        try:
            if mailbox.protocol == "pop3":
                inbox = FolderResult("INBOX")
                result.folders.append(inbox)
                self._poll_pop3(mailbox.address, token, deadline, watcher, inbox, on_thread_start,
                                action=mailbox.action_for("INBOX", self.options.after_delivery))
            else:
                self._poll_imap(mailbox, token, deadline, watcher, result, on_thread_start)
        except MailferryError as e:
            result = self._failed(mailbox.address, e, folders=result.folders)
        except Exception as e:  # a bug or an unmapped library error must not stop the others
            log.exception("unexpected error while polling %s", mailbox.address)
            result = self._failed(mailbox.address, e, folders=result.folders)
        result.seconds = self.clock.monotonic() - started
        self._record(result)
        watcher.mailbox_finished(result)
        return result

    def _poll_imap(self, mailbox: MailboxConfig, token: Secret, deadline: float,
                   watcher: PollObserver, result: MailboxResult,
                   on_thread_start: ThreadStart) -> None:
        with self.server.open(mailbox.address, token) as session:
            plan = plan_mailbox(session, mailbox, default=self.options.after_delivery,
                                states=self.action_states, now=self.clock.now())
            result.folders.extend(plan.notes)
            for folder, action in plan.folders:
                folder_result = FolderResult(folder)
                result.folders.append(folder_result)
                try:
                    FolderPoll(session, mailbox.address, folder, sink=self.sink,
                               checkpoints=self.checkpoints, options=self.options,
                               clock=self.clock, result=folder_result, deadline=deadline,
                               watcher=watcher, on_thread_start=on_thread_start).run()
                    act_after_delivery(session, mailbox.address, folder, action,
                                       capabilities=plan.capabilities, sink=self.sink,
                                       checkpoints=self.checkpoints, states=self.action_states,
                                       options=self.options, clock=self.clock, deadline=deadline,
                                       result=folder_result)
                except FolderUnavailable as e:
                    # One bad folder must not hide the others, run after run.
                    folder_result.error = str(e)
                    log.error("%s: %s/%s: %s", FOLDER_FAILURE_LOG_TEXT, mailbox.address, folder, e)
                    continue
                except CheckpointConflict:
                    # Another run is delivering this folder right now; nothing is wrong.
                    folder_result.yielded = True
                    log.info("%s/%s: another run advanced the checkpoint first; this run leaves "
                             "the folder to it", mailbox.address, folder)
                    continue
                if not folder_result.complete:
                    break

    def _poll_pop3(self, address: str, token: Secret, deadline: float,
                   watcher: PollObserver, result: FolderResult,
                   on_thread_start: ThreadStart, *, action: Action = KEEP) -> None:
        """POP3 sees the Inbox only; see pop3_poll."""
        if self.pop3 is None or self.pop3_checkpoints is None:
            raise RuntimeError("this poller was built without a POP3 server or checkpoint store")
        with self.pop3.open(address, token) as session:
            try:
                Pop3Poll(session, address, sink=self.sink, checkpoints=self.pop3_checkpoints,
                         clock=self.clock, deadline=deadline, watcher=watcher,
                         batch_size=self.options.fetch_batch_size,
                         upload_concurrency=self.options.upload_concurrency, result=result,
                         on_thread_start=on_thread_start).run()
                delete_delivered(session, address, action, sink=self.sink, clock=self.clock,
                                 deadline=deadline, result=result)
            except CheckpointConflict:
                result.yielded = True
                log.info("%s: another run advanced the POP3 checkpoint first; this run leaves "
                         "the mailbox to it", address)

    def _failed(self, address: str, error: Exception,
                folders: list[FolderResult] | None = None) -> MailboxResult:
        log.error("%s: %s: %s: %s", FAILURE_LOG_TEXT, address, type(error).__name__, error)
        return MailboxResult(address, folders or [], 0.0, str(error), type(error).__name__)

    def _record(self, result: MailboxResult) -> None:
        now = self.clock.now()
        try:
            health = self.health.record_result(result, at=now)
        except MailferryError as e:
            log.warning("could not record health of %s: %s", result.address, e)
            return
        try:
            message = metrics_message(mailbox_metrics(
                result, health, now=now, deadline_seconds=self.options.deadline_seconds))
        except Exception:  # the numbers are for dashboards: never fail a poll over them
            log.exception("could not build the metrics record of %s", result.address)
            return
        metrics_log.info("%s", message)


__all__ = ["FAILURE_LOG_TEXT", "FOLDER_FAILURE_LOG_TEXT", "PollOptions", "Poller", "SystemClock"]
