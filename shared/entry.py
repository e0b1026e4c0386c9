"""What the Functions triggers call: a few lines each in function_app.py delegate here."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

from shared.errors import MailferryError
from shared.fanout import enqueue_polls
from shared.mailbox_list import MailboxConfig
from shared.model import MailboxResult, PollReport
from shared.ports import ThreadStart, no_thread_setup

# The SDK clients (wiring) load on the first invocation, not when the host indexes the
# functions: a cold start that only indexes stays fast.

log = logging.getLogger("mailferry")


class EveryMailboxFailed(MailferryError):
    """No mailbox could be polled: the run is reported as failed to the Functions host."""


class InvocationContext(Protocol):
    """What the Functions worker passes as ``context``, as far as logging needs it."""

    @property
    def invocation_id(self) -> str: ...

    @property
    def thread_local_storage(self) -> Any: ...


def carry_invocation(context: InvocationContext | None) -> ThreadStart:
    """A ThreadStart that tags a thread with the invocation, as the worker reads it.

    The Python worker attributes a log record to an invocation through a thread-local
    invocation ID that it sets only in the thread it calls the function in; the host drops
    the records of other threads, so each thread the poll starts sets it too.
    """
    if context is None:
        return no_thread_setup
    storage, invocation_id = context.thread_local_storage, context.invocation_id

    def tag_thread() -> None:
        storage.invocation_id = invocation_id

    return tag_thread


def run_timer_poll(*, past_due: bool, env: Mapping[str, str] | None = None,
                   context: InvocationContext | None = None) -> PollReport:
    """One scheduled poll of every configured mailbox.

    With POLL_MODE=fanout it only queues one message per mailbox for run_queue_poll, and
    returns an empty report.
    """
    from shared.wiring import components_for, load_settings  # noqa: PLC0415 (see above)

    settings = load_settings(os.environ if env is None else env)
    components = components_for(settings)
    mailboxes = components.mailbox_directory.list_mailboxes()
    if past_due:
        # The timer missed its slot (host down, or the previous run overran); this run
        # catches up from the checkpoints, so nothing is lost.
        log.warning("poll timer is past due; catching up from the checkpoints")
    if settings.poll_mode == "fanout":
        started = time.monotonic()
        sent = enqueue_polls(components.poll_queue, mailboxes,
                             on_thread_start=carry_invocation(context))
        log.info("fan-out: queued %d poll messages on '%s'", sent, settings.poll_queue)
        return PollReport([], time.monotonic() - started)
    warn_if_inline_cannot_fit(len(mailboxes), settings.poll.max_concurrent_mailboxes,
                              settings.poll.deadline_seconds)
    report = components.poller.run(mailboxes, on_thread_start=carry_invocation(context))
    for result in report.mailboxes:
        _log_polled(result)
    log.info("poll finished: %d messages from %d mailboxes in %.1f s, %d failed, %d throttled, "
             "%d skipped", report.delivered, len(report.mailboxes), report.seconds,
             len(report.failed), len(report.throttled),
             sum(m.skipped is not None for m in report.mailboxes))
    # Throttled and skipped mailboxes are delays, not failures.
    if report.mailboxes and len(report.failed) == len(report.mailboxes):
        first = report.failed[0]
        raise EveryMailboxFailed(
            f"All {len(report.mailboxes)} mailboxes failed; the first: {first.address}: "
            f"{first.error}"
        )
    return report


# Even an empty mailbox costs a TLS handshake, AUTHENTICATE, EXAMINE and SEARCH: about a
# second on a WAN link to Exchange. Inline polls share one run's time box.
EMPTY_MAILBOX_SECONDS = 1.0


def warn_if_inline_cannot_fit(mailboxes: int, concurrency: int, deadline_seconds: float) -> bool:
    """Warn when even empty mailboxes would not all fit one inline run; True if it warned."""
    needed = mailboxes / max(1, concurrency) * EMPTY_MAILBOX_SECONDS
    if needed <= deadline_seconds:
        return False
    log.warning("inline mode: %d mailboxes at %d at a time need about %.0f s even when empty, "
                "more than POLL_DEADLINE_SECONDS (%.0f s): use POLL_MODE=fanout, or raise "
                "MAX_CONCURRENT_MAILBOXES", mailboxes, concurrency, needed, deadline_seconds)
    return True


def run_queue_poll(body: str, *, dequeue_count: int = 1, env: Mapping[str, str] | None = None,
                   context: InvocationContext | None = None) -> MailboxResult | None:
    """Poll the one mailbox a fan-out message names, under that mailbox's lease.

    None when there was nothing to poll: a message naming no configured mailbox (dropped),
    or another poll holding the lease. Raises MailboxPollFailed when the poll failed and
    attempts remain, so the host retries the message; on the last attempt the failure is
    recorded in the mailbox's health instead.
    """
    from shared.wiring import components_for, load_settings  # noqa: PLC0415 (see above)

    components = components_for(load_settings(os.environ if env is None else env))
    poller = components.poller
    on_thread_start = carry_invocation(context)

    def poll(mailbox: MailboxConfig) -> MailboxResult:
        # The queue worker holds the mailbox's lease and found it not throttled.
        [result] = poller.run([mailbox], on_thread_start=on_thread_start, lease_held=True).mailboxes
        return result

    result = components.queue_worker.handle(body, dequeue_count=dequeue_count,
                                            mailboxes=components.mailbox_directory, poll=poll,
                                            on_thread_start=on_thread_start)
    if result is not None:
        _log_polled(result)
    return result


def _log_polled(result: MailboxResult) -> None:
    """One line per mailbox polled without error (failures, throttles and skips are logged by
    the poller)."""
    if result.ok and result.skipped is None:
        log.info("mailbox polled: %s: %d new messages, %d bytes in %.1f s%s", result.address,
                 result.delivered, result.bytes_delivered, result.seconds,
                 "" if result.complete else " (time box reached; next run resumes)")
