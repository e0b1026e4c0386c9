"""Fan-out mode: one queue message per mailbox, polled under a per-mailbox lease.

The timer sends ``{"mailbox": address}`` per configured mailbox; the queue function checks
that the mailbox is not throttled, takes its lease, polls that one mailbox, and releases
the lease. The lease makes
duplicated messages and overlapping runs harmless: whoever does not get it completes its
message without polling (the holder is delivering that mailbox right now). Exactly-once
still rests on the poll itself (create-only blobs, ETag-guarded checkpoints); the lease
spares the mail server and storage the wasted second session.

Pure: the queue, the lease and the health row are reached through the ports below.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from types import TracebackType

from shared.errors import MailferryError
from shared.mailbox_list import MailboxConfig
from shared.model import MailboxResult
from shared.ports import (
    Clock,
    Lease,
    LeaseStore,
    ListedMailboxes,
    MailboxDirectory,
    PollQueue,
    QueueHealth,
    ThreadStart,
    no_thread_setup,
)
from shared.throttle import read_health, skip_if_throttled

log = logging.getLogger("mailferry.fanout")

# Must equal extensions.queues.maxDequeueCount in host.json (a test checks it): the attempt
# at this count is the last one the host makes, so that is when the failure is recorded.
MAX_DEQUEUE_COUNT = 3
# Poll messages in flight at once when the timer queues every mailbox.
ENQUEUE_CONCURRENCY = 16


class MailboxPollFailed(MailferryError):
    """The queued poll of a mailbox failed; raised so the Functions host retries the message."""


class InvalidPollMessage(ValueError):
    """A queue message that names no configured mailbox; it is dropped, not retried."""


def poll_message(address: str) -> str:
    """The queue message asking for one poll of ``address``."""
    return json.dumps({"mailbox": address})


def parse_poll_message(body: str,
                       mailboxes: Sequence[MailboxConfig] | MailboxDirectory) -> MailboxConfig:
    """The configured mailbox a message names; InvalidPollMessage for anything else."""
    directory = ListedMailboxes(mailboxes) if isinstance(mailboxes, Sequence) else mailboxes
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as e:
        raise InvalidPollMessage(f"not JSON ({e.msg} at {e.pos})") from e
    address = payload.get("mailbox") if isinstance(payload, dict) else None
    if not isinstance(address, str):
        raise InvalidPollMessage('expected {"mailbox": "<address>"}')
    mailbox = directory.get_mailbox(address)
    if mailbox is not None:
        return mailbox
    raise InvalidPollMessage(f"{address[:320]!r} is not a configured mailbox (removed since it was queued?)")


def enqueue_polls(queue: PollQueue, mailboxes: Sequence[MailboxConfig], *,
                  concurrency: int = ENQUEUE_CONCURRENCY,
                  on_thread_start: ThreadStart = no_thread_setup) -> int:
    """Send one poll message per mailbox, several at once; the number sent.

    One send is one HTTP round trip: thousands of mailboxes sent one after another would
    take most of a timer run. A failed send stops the rest and is raised (the next timer
    run queues every mailbox again; the lease makes duplicates harmless).
    """
    if len(mailboxes) <= 1 or concurrency <= 1:
        for mailbox in mailboxes:
            queue.send(poll_message(mailbox.address))
        return len(mailboxes)
    with ThreadPoolExecutor(min(concurrency, len(mailboxes)), thread_name_prefix="enqueue",
                            initializer=on_thread_start) as pool:
        list(pool.map(lambda m: queue.send(poll_message(m.address)), mailboxes))
    return len(mailboxes)


class Outcome(Enum):
    """What becomes of a queue message once its poll has run."""

    DONE = "done"          # complete the message
    RETRY = "retry"        # raise: the host makes it visible again after visibilityTimeout
    GIVE_UP = "give up"    # the last attempt failed: record it in health, complete the message


def outcome_of(result: MailboxResult, *, dequeue_count: int,
               max_dequeue_count: int = MAX_DEQUEUE_COUNT) -> Outcome:
    """Decide from the poll's result and how often the message has been dequeued.

    A throttled mailbox did not fail: its health row holds when to try again, and a retried
    message would only be skipped until then.
    """
    if not result.failed:
        return Outcome.DONE
    return Outcome.GIVE_UP if dequeue_count >= max_dequeue_count else Outcome.RETRY


# How long the end of a poll waits for its lease to be released.
RELEASE_WAIT_SECONDS = 5.0


class LeaseKeeper:
    """Holds a lease for a ``with`` block, renewing it from a background thread."""

    def __init__(self, lease: Lease, *, every_seconds: float, mailbox: str,
                 on_thread_start: ThreadStart = no_thread_setup) -> None:
        self._lease = lease
        self._on_thread_start = on_thread_start
        self._every = every_seconds
        self._mailbox = mailbox
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, daemon=True,
                                        name=f"lease-{mailbox}")

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        # Storage may hold a renewal or the release for its whole timeout; the lease expires
        # on its own, so the run waits a few seconds at most and goes on (its time box).
        releasing = threading.Thread(target=self._release, daemon=True,
                                     name=f"lease-release-{self._mailbox}")
        releasing.start()
        releasing.join(RELEASE_WAIT_SECONDS)

    def _release(self) -> None:
        self._on_thread_start()
        self._thread.join()
        try:
            self._lease.release()
        except MailferryError as e:
            # It expires on its own within the lease duration.
            log.warning("%s: could not release the poll lease: %s", self._mailbox, e)

    def _renew_until_stopped(self) -> None:
        self._on_thread_start()
        while not self._stop.wait(self._every):
            try:
                self._lease.renew()
            except MailferryError as e:
                # Another poll may start once it expires. Delivery stays exactly-once
                # (create-only blobs, ETag-guarded checkpoints); only work is duplicated.
                log.warning("%s: could not renew the poll lease: %s", self._mailbox, e)


@dataclass
class QueueWorker:
    """Handles one fan-out queue message: parse, lease, poll, decide."""

    leases: LeaseStore
    health: QueueHealth
    clock: Clock
    max_dequeue_count: int = MAX_DEQUEUE_COUNT

    def handle(self, body: str, *, dequeue_count: int,
               mailboxes: Sequence[MailboxConfig] | MailboxDirectory,
               poll: Callable[[MailboxConfig], MailboxResult],
               on_thread_start: ThreadStart = no_thread_setup) -> MailboxResult | None:
        """Poll the mailbox a message names; None when there was nothing to poll.

        A mailbox throttled until later is not polled (one health read, no lease, no login):
        its result says it was skipped. Raises MailboxPollFailed when the poll failed and the
        host should retry the message.
        """
        try:
            mailbox = parse_poll_message(body, mailboxes)
        except InvalidPollMessage as e:
            log.error("poll message dropped: %s", e)
            return None
        skipped = skip_if_throttled(mailbox.address, read_health(self.health, mailbox.address),
                                    now=self.clock.now())
        if skipped is not None:
            return skipped
        lease = self.leases.acquire(mailbox.address)
        if lease is None:
            log.info("%s: another poll holds its lease; this message completes without polling",
                     mailbox.address)
            return None
        with LeaseKeeper(lease, every_seconds=self.leases.duration_seconds / 3,
                         mailbox=mailbox.address, on_thread_start=on_thread_start):
            result = poll(mailbox)
        outcome = outcome_of(result, dequeue_count=dequeue_count,
                             max_dequeue_count=self.max_dequeue_count)
        if outcome is Outcome.RETRY:
            raise MailboxPollFailed(
                f"{mailbox.address}: poll failed (attempt {dequeue_count} of "
                f"{self.max_dequeue_count}; the host retries): {result.error_type}: {result.error}")
        if outcome is Outcome.GIVE_UP:
            log.error("%s: poll failed on attempt %d of %d; its queue message is given up "
                      "(the next timer run queues a new one)", mailbox.address, dequeue_count,
                      self.max_dequeue_count)
            try:
                self.health.record_queue_given_up(mailbox.address, attempts=dequeue_count,
                                                  at=self.clock.now())
            except MailferryError as e:
                log.warning("could not record health of %s: %s", mailbox.address, e)
        return result


__all__ = [
    "MAX_DEQUEUE_COUNT",
    "InvalidPollMessage",
    "LeaseKeeper",
    "MailboxPollFailed",
    "Outcome",
    "QueueWorker",
    "enqueue_polls",
    "outcome_of",
    "parse_poll_message",
    "poll_message",
]
