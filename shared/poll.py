"""The poll algorithm: for each mailbox and folder, deliver what is new, then checkpoint.

Exactly-once rests on three things: blob names are deterministic, blob writes are
create-only, and a checkpoint only moves past UIDs whose blobs exist. A run that dies
anywhere is repaired by the next one: it re-reads from the checkpoint and finds the
blobs it already wrote.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.action_ports import ActionStateStore
from shared.errors import MailboxThrottled, MailferryError
from shared.fanout import LeaseKeeper
from shared.log_texts import FAILURE_LOG_TEXT, FOLDER_FAILURE_LOG_TEXT, SKIPPED_LOG_TEXT
from shared.mailbox_list import MailboxConfig
from shared.mailbox_poll import poll_imap, poll_pop3
from shared.metrics import mailbox_metrics, metrics_message
from shared.model import FolderResult, Health, MailboxResult, PollOptions, PollReport, Secret
from shared.ports import (
    CheckpointStore,
    Clock,
    HealthStore,
    LeaseStore,
    MailServer,
    MessageSink,
    PollObserver,
    Pop3CheckpointStore,
    Pop3Server,
    ThreadStart,
    TokenSource,
    no_thread_setup,
)
from shared.reconnect import Goodbyes, ReconnectPolicy
from shared.throttle import read_health, skip_if_throttled, throttled_result
from shared.time_box import CHECKPOINT_GRACE_SECONDS, MailboxShares, TimeBox, TimeBoxedCalls

log = logging.getLogger("mailferry.poll")
metrics_log = logging.getLogger("mailferry.metrics")

TIME_BOX_SKIP = "the run's time box was spent before this mailbox was reached"
LEASE_SKIP = "another run holds its lease"


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


class _RunToken:
    """The run's access token, fetched when the first mailbox needs it: a run whose
    mailboxes are all throttled asks for none. A failure is kept and given to every mailbox."""

    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._error: MailferryError | None = None

    def get(self) -> Secret:
        with self._lock:
            if self._token is None and self._error is None:
                try:
                    self._token = self._tokens.get_token()
                except MailferryError as e:
                    self._error = e
            if self._error is not None:
                raise self._error
            assert self._token is not None
            return self._token


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
    # The per-mailbox leases fan-out takes; None: overlapping runs are not kept apart.
    leases: LeaseStore | None = None
    # Draws the jitter of throttling back-offs.
    jitter: random.Random = field(default_factory=random.Random)
    # Where the after-delivery phase keeps its rows (needed unless AFTER_DELIVERY is keep).
    action_states: ActionStateStore | None = None
    # How a dropped mail connection is reopened within a run.
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)

    def run(
        self, mailboxes: Sequence[MailboxConfig], observer: PollObserver | None = None, *,
        on_thread_start: ThreadStart = no_thread_setup, lease_held: bool = False,
    ) -> PollReport:
        """Poll every mailbox with bounded concurrency; one failing never stops the others.

        ``on_thread_start`` runs first in every thread the poll starts. ``lease_held``: the
        caller holds the mailboxes' leases and has checked they are not throttled (fan-out).
        """
        observer = observer or SilentObserver()
        started = self.clock.monotonic()
        deadline = started + self.options.deadline_seconds
        token = _RunToken(self.tokens)
        workers = max(1, min(self.options.max_concurrent_mailboxes, len(mailboxes)))
        shares = MailboxShares(self.clock, deadline, mailboxes=len(mailboxes), workers=workers)
        goodbyes = Goodbyes(on_thread_start)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="mailbox",
                                    initializer=on_thread_start) as pool:
                results = list(pool.map(
                    lambda m: self._poll_mailbox(m, token, shares.next_deadline(), observer,
                                                 on_thread_start, lease_held=lease_held,
                                                 goodbyes=goodbyes),
                    self._least_recently_polled_first(mailboxes)))
        finally:
            goodbyes.wait()  # the last LOGOUTs (see MailboxConnection)
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
        self, mailbox: MailboxConfig, token: _RunToken, deadline: float, observer: PollObserver,
        on_thread_start: ThreadStart, *, lease_held: bool, goodbyes: Goodbyes,
    ) -> MailboxResult:
        if self.clock.monotonic() >= deadline:
            # Not even a login once the time box is spent: the run must end on time.
            return MailboxResult(mailbox.address, skipped=TIME_BOX_SKIP)
        address = mailbox.address
        if not lease_held:
            # One health read: a throttled mailbox costs nothing more (no lease, token or login).
            skipped = skip_if_throttled(address, read_health(self.health, address),
                                        now=self.clock.now())
            if skipped is not None:
                return skipped
        if lease_held or self.leases is None:
            return self._poll_and_record(mailbox, token, deadline, observer, on_thread_start,
                                         goodbyes)
        try:
            lease = self.leases.acquire(address)
        except Exception as e:  # storage failing (or a bug) costs this mailbox only
            if not isinstance(e, MailferryError):
                log.exception("unexpected error taking the poll lease of %s", address)
            result = self._failed(address, e)
            self._record(result, deadline, on_thread_start)
            observer.mailbox_finished(result)
            return result
        if lease is None:
            # The lease fan-out takes too: overlapping runs (a slow one and the next, one by
            # hand, a queued one) never open a second connection to a mailbox.
            reason = (f"{LEASE_SKIP}: it is polling the mailbox now, or was killed less than "
                      f"{self.leases.duration_seconds:g} s ago")
            log.info("%s: %s: %s", SKIPPED_LOG_TEXT, address, reason)
            return MailboxResult(address, skipped=reason)
        with LeaseKeeper(lease, every_seconds=self.leases.duration_seconds / 3, mailbox=address,
                         on_thread_start=on_thread_start):
            return self._poll_and_record(mailbox, token, deadline, observer, on_thread_start,
                                         goodbyes)

    def _poll_and_record(
        self, mailbox: MailboxConfig, token: _RunToken, deadline: float, observer: PollObserver,
        on_thread_start: ThreadStart, goodbyes: Goodbyes,
    ) -> MailboxResult:
        started = self.clock.monotonic()
        observer.mailbox_started(mailbox.address)
        result = MailboxResult(mailbox.address)
        try:
            secret = token.get()
            if mailbox.protocol == "pop3":
                inbox = FolderResult("INBOX")
                result.folders.append(inbox)
                poll_pop3(self, mailbox, secret, deadline, observer, inbox, on_thread_start)
            else:
                poll_imap(self, mailbox, secret, deadline, observer, result, on_thread_start,
                          goodbyes)
        except MailboxThrottled as e:
            # A delay, not a failure: what was delivered stays; no poll before the server's time.
            previous = read_health(self.health, mailbox.address) or Health(mailbox.address)
            result = throttled_result(mailbox.address, e, previous, result.folders,
                                      now=self.clock.now(), rng=self.jitter)
        except MailferryError as e:
            result = self._failed(mailbox.address, e, folders=result.folders)
        except Exception as e:  # a bug or an unmapped library error must not stop the others
            log.exception("unexpected error while polling %s", mailbox.address)
            result = self._failed(mailbox.address, e, folders=result.folders)
        result.seconds = self.clock.monotonic() - started
        self._record(result, deadline, on_thread_start)
        observer.mailbox_finished(result)
        return result

    def _failed(self, address: str, error: Exception,
                folders: list[FolderResult] | None = None) -> MailboxResult:
        log.error("%s: %s: %s: %s", FAILURE_LOG_TEXT, address, type(error).__name__, error)
        return MailboxResult(address, folders or [], 0.0, str(error), type(error).__name__)

    def _record(self, result: MailboxResult, deadline: float, on_thread_start: ThreadStart) -> None:
        now = self.clock.now()
        # Waited for a little past the checkpoint writes, no longer: storage that stalls costs
        # this row (the ETag-guarded write is safe whenever it lands), never the time box.
        until = TimeBox(deadline).writes_end + CHECKPOINT_GRACE_SECONDS
        try:
            with TimeBoxedCalls(self.clock, until, on_thread_start=on_thread_start) as calls:
                health = calls.call(f"write the health of {result.address}",
                                    lambda: self.health.record_result(result, at=now))
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


__all__ = ["FAILURE_LOG_TEXT", "FOLDER_FAILURE_LOG_TEXT", "LEASE_SKIP", "PollOptions", "Poller",
           "SystemClock"]
