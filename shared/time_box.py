"""A run's time box, shared fairly among its mailboxes, and the stated margins past it.

A mailbox's part ends at ``TimeBox.ends``: no command or batch starts after it. A command
already sent gets READ_GRACE_SECONDS more to be answered, then its connection is cut
(``MailServer.open``'s deadline); uploads already started get UPLOAD_GRACE_SECONDS more,
then the run stops waiting for them; a checkpoint write gets CHECKPOINT_GRACE_SECONDS more.
The health row is written after that, waited for CHECKPOINT_GRACE_SECONDS more at most.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from shared.errors import FailureKind, StorageError
from shared.ports import Clock, ThreadStart, no_thread_setup

READ_GRACE_SECONDS = 5.0
UPLOAD_GRACE_SECONDS = 10.0
CHECKPOINT_GRACE_SECONDS = 5.0
# However late it is, a wait lasts this long before it gives up: a call that is answering
# is not abandoned for nothing, and a clock that jumps in a test does not race the thread.
LAST_WAIT_SECONDS = 1.0

Result = TypeVar("Result")


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

    @property
    def writes_end(self) -> float:
        """When the run stops waiting for a checkpoint write."""
        return self.waits_end + CHECKPOINT_GRACE_SECONDS


def wait_left(clock: Clock, until: float) -> float:
    """How long to wait for something that should be done by ``until``."""
    return max(LAST_WAIT_SECONDS, until - clock.monotonic())


class TimeBoxedCalls:
    """Calls made on a thread of their own, so that waiting for one ends at ``until`` (a
    ``clock`` time) whatever storage does. The call itself may still finish later: only
    writes that are safe whenever they land go here (ETag-guarded checkpoints)."""

    def __init__(self, clock: Clock, until: float, *,
                 on_thread_start: ThreadStart = no_thread_setup) -> None:
        self._clock = clock
        self._until = until
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint",
                                        initializer=on_thread_start)
        self._gave_up = False

    @property
    def gave_up(self) -> bool:
        """A call was not answered within the time box: no more are made."""
        return self._gave_up

    def __enter__(self) -> TimeBoxedCalls:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._pool.shutdown(wait=not self._gave_up, cancel_futures=True)

    def start(self, what: str, function: Callable[[], Result]) -> Future[Result]:
        """Start ``function()`` without waiting for it; calls run one at a time, in order."""
        if self._gave_up:
            raise StorageError(f"Could not {what}: storage did not answer an earlier call before "
                               "the run's time box ended.", kind=FailureKind.STORAGE_UNREACHABLE)
        return self._pool.submit(function)

    def result(self, what: str, future: Future[Result]) -> Result:
        """A started call's result; StorageError when the time box ends first."""
        if not wait([future], timeout=wait_left(self._clock, self._until)).done:
            self._gave_up = True
            raise StorageError(f"Could not {what}: storage did not answer before the run's time "
                               "box ended.", kind=FailureKind.STORAGE_UNREACHABLE)
        return future.result()

    def call(self, what: str, function: Callable[[], Result]) -> Result:
        """``function()``'s result; StorageError when the time box ends first."""
        return self.result(what, self.start(what, function))


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
