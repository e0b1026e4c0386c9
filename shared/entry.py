"""What the Functions triggers call: a few lines each in function_app.py delegate here."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from shared.errors import MailferryError
from shared.model import PollReport
from shared.wiring import get_poller, load_settings

log = logging.getLogger("mailferry")


class EveryMailboxFailed(MailferryError):
    """No mailbox could be polled: the run is reported as failed to the Functions host."""


def run_timer_poll(*, past_due: bool, env: Mapping[str, str] | None = None) -> PollReport:
    """One scheduled poll of every configured mailbox."""
    settings = load_settings(os.environ if env is None else env)
    if past_due:
        # The timer missed its slot (host down, or the previous run overran); this run
        # catches up from the checkpoints, so nothing is lost.
        log.warning("poll timer is past due; catching up from the checkpoints")
    report = get_poller(settings).run(settings.mailboxes)
    for result in report.mailboxes:
        if result.ok:
            log.info("mailbox polled: %s: %d new messages, %d bytes in %.1f s%s",
                     result.address, result.delivered, result.bytes_delivered, result.seconds,
                     "" if result.complete else " (time box reached; next run resumes)")
    log.info("poll finished: %d messages from %d mailboxes in %.1f s, %d failed",
             report.delivered, len(report.mailboxes), report.seconds, len(report.failed))
    if report.mailboxes and len(report.failed) == len(report.mailboxes):
        first = report.failed[0]
        raise EveryMailboxFailed(
            f"All {len(report.mailboxes)} mailboxes failed; the first: {first.address}: "
            f"{first.error}"
        )
    return report
