"""A run's time box, shared fairly among its mailboxes, and the stated margins past it.

A mailbox's part ends at ``TimeBox.ends``: no command or batch starts after it. A command
already sent gets READ_GRACE_SECONDS more to be answered, then its connection is cut
(``MailServer.open``'s deadline); uploads already started get UPLOAD_GRACE_SECONDS more,
then the run stops waiting for them. What follows is bounded by storage's own timeouts: the
checkpoint write and the health row.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from shared.ports import Clock

READ_GRACE_SECONDS = 5.0
UPLOAD_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class TimeBox:
    """One mailbox's part of a run, in ``Clock.monotonic()`` time."""

    ends: float

    @property
    def reads_end(self) -> float:
        """When the server's answers are cut."""
        return self.ends + READ_GRACE_SECONDS

    @property
    def waits_end(self) -> float:
        """When the run stops waiting for uploads."""
        return self.reads_end + UPLOAD_GRACE_SECONDS


class MailboxShares:
    """Hands each mailbox, as it starts, a fair part of what is left of the run's time box,
    so one slow mailbox cannot take the time of those waiting behind it: with ``workers``
    polling at once and ``n`` mailboxes not yet started, a starting one gets
    ``workers / n`` of the time left (all of it once no one waits behind)."""

    def __init__(self, clock: Clock, deadline: float, *, mailboxes: int, workers: int) -> None:
        self._clock = clock
        self._deadline = deadline
        self._not_started = mailboxes
        self._workers = max(1, workers)
        self._lock = threading.Lock()

    def next_deadline(self) -> float:
        """The deadline of the mailbox starting now."""
        with self._lock:
            waiting = self._not_started
            self._not_started -= 1
        if waiting <= self._workers:
            return self._deadline
        now = self._clock.monotonic()
        return min(self._deadline, now + max(0.0, self._deadline - now) * self._workers / waiting)
