"""A mailbox's one connection for a run, reopened after a drop a bounded number of times."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

from shared.errors import CheckpointConflict, FailureKind, MailServerError, StorageError
from shared.ports import Clock
from shared.time_box import TimeBox

log = logging.getLogger("mailferry.poll")

Session = TypeVar("Session")


@dataclass(frozen=True)
class ReconnectPolicy:
    """How often a dropped connection is reopened within a run (``attempts``), and after
    how long a pause: doubling from ``first_pause`` up to ``max_pause``, each drawn at
    random between half and all of that (so many mailboxes dropped at once do not return
    at once). ``sleep`` and ``jitter`` are replaceable for tests."""

    attempts: int = 3
    first_pause: float = 1.0
    max_pause: float = 15.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random

    def pause(self, drop: int) -> float:
        """The pause before reopening after the ``drop``-th drop (1 for the first)."""
        ceiling = min(self.max_pause, self.first_pause * 2.0 ** max(0, drop - 1))
        return ceiling * (0.5 + 0.5 * self.jitter())


class MailboxConnection(Generic[Session]):
    """Opens a mailbox's session when first needed and reopens it after a drop, at most
    ``policy.attempts`` times and never past the time box; other failures pass through."""

    def __init__(self, open_session: Callable[[], AbstractContextManager[Session]], *,
                 address: str, policy: ReconnectPolicy, clock: Clock, time_box: TimeBox) -> None:
        self._open_session = open_session
        self._address = address
        self._policy = policy
        self._clock = clock
        self._time_box = time_box
        self._stack = ExitStack()
        self._session: Session | None = None
        self.drops = 0

    def __enter__(self) -> MailboxConnection[Session]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._close()

    def run(self, work: Callable[[Session], object], *, progress: Callable[[], str]) -> None:
        """Do ``work`` on the session; after a drop, reopen it and do ``work`` again (it
        resumes from what is stored). ``progress`` says what is stored, for the errors:
        when this gives up, and when storage fails."""
        while True:
            try:
                if self._session is None:
                    self._session = self._stack.enter_context(self._open_session())
                work(self._session)
                return
            except MailServerError as e:
                if e.kind is not FailureKind.CONNECTION_DROPPED:
                    raise
                self._close()
                self.drops += 1
                self._pause_or_give_up(e, progress)
            except CheckpointConflict:
                raise
            except StorageError as e:
                raise StorageError(f"{e} {self._address}: {progress()}; the next run resumes "
                                   "there.", kind=e.kind) from e

    def _pause_or_give_up(self, error: MailServerError, progress: Callable[[], str]) -> None:
        if self.drops > self._policy.attempts:
            raise MailServerError(
                f"{self._address}: the connection dropped {self.drops} times in this run (last: "
                f"{error}); {progress()}; the next run resumes there.",
                kind=FailureKind.CONNECTION_DROPPED) from error
        pause = self._policy.pause(self.drops)
        now = self._clock.monotonic()
        if now + pause >= self._time_box.ends:
            why = "" if now >= self._time_box.ends else " No time is left to reconnect in this run."
            raise MailServerError(f"{error}{why} {progress()}; the next run resumes there.",
                                  kind=FailureKind.CONNECTION_DROPPED) from error
        log.warning("%s: connection dropped (%s); reconnecting in %.1f s (%d of %d)",
                    self._address, error, pause, self.drops, self._policy.attempts)
        self._policy.sleep(pause)

    def _close(self) -> None:
        self._session = None
        try:
            self._stack.close()
        finally:
            self._stack = ExitStack()
