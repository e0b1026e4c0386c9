"""Throttled mailboxes: when one may be polled again, and how a throttle or a skip is logged.

Exchange says how long to wait (``Suggested Backoff Time``); when it does not, the wait is
an exponential back-off per mailbox with jitter. The not-before time is kept in the
mailbox's health row, so every later run (the timer's, a queued one, one by hand) leaves
the mailbox alone until then, without a token, a login or a connection. A throttle is a
delay, not a failure: it is logged with its own text, and with the failure text only once
the mailbox has gone ``ALERT_AFTER`` without a success, so the failing-mailbox alert fires
for a mailbox stuck that long and not before.
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

from shared.errors import MailboxThrottled
from shared.log_texts import FAILURE_LOG_TEXT, SKIPPED_LOG_TEXT, THROTTLED_LOG_TEXT
from shared.model import FolderResult, Health, MailboxResult
from shared.ports import HealthReader

log = logging.getLogger("mailferry.poll")

# Without a suggested time: 1 min, 2, 4, ... up to 1 h, each drawn within ±20 % so that
# mailboxes throttled together do not all come back together.
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)
BACKOFF_JITTER = 0.2
# Exchange suggests 1.5 to 50 minutes; a longer wait is a server's mistake, not a plan.
SUGGESTED_CAP = timedelta(hours=24)
# Throttled this long without a success, a mailbox is logged as failing on every run.
ALERT_AFTER = timedelta(hours=3)


def not_before(previous: Health, retry_after_seconds: float | None, *, now: datetime,
               rng: random.Random) -> datetime:
    """When a mailbox throttled ``now`` may be polled again; ``previous`` is its health before."""
    if retry_after_seconds is not None:
        return now + min(timedelta(seconds=max(0.0, retry_after_seconds)), SUGGESTED_CAP)
    step = min(BACKOFF_FIRST * (1 << min(previous.throttle_count, 16)), BACKOFF_CAP)
    return now + min(step * rng.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER), BACKOFF_CAP)


def read_health(store: HealthReader, address: str) -> Health | None:
    """The mailbox's health row; None when it has none or it cannot be read (then it is polled)."""
    try:
        return store.get_health(address)
    except Exception as e:  # storage failing (or a bug): the poll itself will say what failed
        log.warning("could not read the health of %s, so it is polled without checking for a "
                    "throttle: %s: %s", address, type(e).__name__, e)
        return None


def skip_if_throttled(address: str, health: Health | None, *, now: datetime) -> MailboxResult | None:
    """The skipped result of a mailbox still inside its not-before time (logged once), or None."""
    until = health.throttled_until if health is not None else None
    if health is None or until is None or until <= now:
        return None
    since = health.throttled_since or until
    reason = f"throttled until {when(until)} (since {when(since)})"
    log.info("%s: %s: %s", SKIPPED_LOG_TEXT, address, reason)
    _alert_if_long(address, since, until, now, health.last_error or "")
    return MailboxResult(address, skipped=reason)


def throttled_result(address: str, error: MailboxThrottled, previous: Health,
                     folders: list[FolderResult], *, now: datetime,
                     rng: random.Random) -> MailboxResult:
    """The result of a poll the server throttled: logged once, as a delay; not a failure.

    The wait counts from the server's answer when the poll noted it (not from after what
    arrived before it was stored), else from ``now``."""
    said = min(error.answered_at, now) if error.answered_at is not None else now
    until = not_before(previous, error.retry_after_seconds, now=said, rng=rng)
    log.warning("%s: %s: until %s (%s)", THROTTLED_LOG_TEXT, address, when(until), error)
    _alert_if_long(address, previous.throttled_since or now, until, now, str(error))
    return MailboxResult(address, folders, 0.0,
                         f"{error} Not polled again before {when(until)}; what was delivered "
                         "before is kept.", type(error).__name__, throttled_until=until)


def when(moment: datetime) -> str:
    """A time as logs, health rows and ``mailferry status`` show it."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _alert_if_long(address: str, since: datetime, until: datetime, now: datetime,
                   words: str) -> None:
    if now - since < ALERT_AFTER:
        return
    hours = (now - since).total_seconds() / 3600
    log.error("%s: %s: MailboxThrottled: throttled since %s (%.1f h without a success); next "
              "poll after %s: %s", FAILURE_LOG_TEXT, address, when(since), hours, when(until), words)


__all__ = ["ALERT_AFTER", "BACKOFF_CAP", "BACKOFF_FIRST", "SUGGESTED_CAP", "not_before",
           "read_health", "skip_if_throttled", "throttled_result", "when"]
