"""A mailbox's one connection for a run, reopened after a drop a bounded number of times."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

from shared.errors import CheckpointConflict, FailureKind, MailServerError, StorageError
from shared.ports import Clock, ThreadStart, no_thread_setup
from shared.time_box import TimeBox

log = logging.getLogger("mailferry.poll")

Session = TypeVar("Session")

# How long the end of a run waits for the goodbyes still being said: each is bounded where
# it is said (a few seconds for the server's last answer).
GOODBYE_WAIT_SECONDS = 6.0


@dataclass(frozen=True)
class ReconnectPolicy:
    """When a dropped connection is reopened within a run.

    A drop is first taken as passing: the connection is reopened after ``quick_pause``. Drops
    in a row with nothing delivered between them back off from ``first_pause``, doubling up
    to ``max_pause``; after ``attempts`` of those in a row, or ``max_drops`` in the whole
    run, the run gives up and the next one resumes. Every pause is drawn at random between
    half and all of its length (so many mailboxes dropped at once do not return at once).
    ``sleep`` and ``jitter`` are replaceable for tests."""

    attempts: int = 3
    max_drops: int = 20
    quick_pause: float = 0.05
    first_pause: float = 1.0
    max_pause: float = 15.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random

    def pause(self, in_a_row: int) -> float:
        """The pause before reopening after the ``in_a_row``-th drop with nothing delivered
        between (1 for the first drop, or one after progress)."""
        if in_a_row <= 1:
            ceiling = self.quick_pause
        else:
            ceiling = min(self.max_pause, self.first_pause * 2.0 ** (in_a_row - 2))
        return ceiling * (0.5 + 0.5 * self.jitter())


class Goodbyes:
    """Mail sessions ended on threads of their own: a mailbox's poll does not wait a round
    trip for the server's answer to its goodbye (IMAP's LOGOUT says nothing a poll needs),
    and the next mailbox starts meanwhile. ``wait`` lets the last ones finish as a run ends."""

    def __init__(self, on_thread_start: ThreadStart = no_thread_setup) -> None:
        self._on_thread_start = on_thread_start
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def end(self, close: Callable[[], object], *, address: str) -> None:
        """Run ``close`` (the session's end) on a thread of its own."""
        thread = threading.Thread(target=self._end, args=(close, address), daemon=True,
                                  name=f"goodbye-{address}")
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _end(self, close: Callable[[], object], address: str) -> None:
        self._on_thread_start()
        try:
            close()
        except Exception as e:  # what was delivered is stored; the server ends the session
            log.warning("%s: could not end the mail session: %s", address, e)

    def wait(self, seconds: float = GOODBYE_WAIT_SECONDS) -> None:
        """Wait for the goodbyes still being said, ``seconds`` at most in all."""
        ends = time.monotonic() + seconds
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(max(0.0, ends - time.monotonic()))


class MailboxConnection(Generic[Session]):
    """Opens a mailbox's session when first needed and reopens it after a drop, as
    ``policy`` says and never past the time box; other failures pass through.

    Work that is told of a drop before it is done with it (``dropped``: a folder still
    storing what arrived) lets a passing drop's new session open meanwhile, on a thread
    that runs ``on_thread_start`` first, and may leave that storing running into its next
    attempt. The dead session is closed first: never two at once. With ``goodbyes``, the
    last session is ended through them instead of before leaving the ``with`` block."""

    def __init__(self, open_session: Callable[[], AbstractContextManager[Session]], *,
                 address: str, policy: ReconnectPolicy, clock: Clock, time_box: TimeBox,
                 on_thread_start: ThreadStart = no_thread_setup,
                 goodbyes: Goodbyes | None = None) -> None:
        self._open_session = open_session
        self._goodbyes = goodbyes
        self._address = address
        self._policy = policy
        self._clock = clock
        self._time_box = time_box
        self._on_thread_start = on_thread_start
        self._stack = ExitStack()
        self._session: Session | None = None
        self._early: Future[tuple[ExitStack, Session]] | None = None
        self._pool: ThreadPoolExecutor | None = None  # where sessions open early
        self._moved: Callable[[], object] = lambda: ""
        self._moved_from: object = ""  # where the work stood when the current attempt began
        self.drops = 0  # in this run
        self.in_a_row = 0  # drops since the work last got further

    def __enter__(self) -> MailboxConnection[Session]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._discard_early()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        if self._goodbyes is not None and self._session is not None:
            stack, self._stack, self._session = self._stack, ExitStack(), None
            self._goodbyes.end(stack.close, address=self._address)
            return
        self._close()

    def run(self, work: Callable[[Session], object], *, progress: Callable[[], str],
            moved: Callable[[], object] | None = None,
            settle: Callable[[], None] = lambda: None) -> None:
        """Do ``work`` on the session; after a drop, reopen it and do ``work`` again (it
        resumes from what is stored). ``progress`` says what is stored, for the errors;
        ``moved`` (by default ``progress``) changes when the work gets further: a change
        between drops is progress. ``settle`` finishes what a dropped attempt left running;
        it is called before a pause or giving up, so both go by what is stored."""
        self._moved = moved or progress
        while True:
            self._moved_from = self._moved()
            try:
                if self._session is None:
                    self._session = self._reopened()
                work(self._session)
                return
            except MailServerError as e:
                if e.kind is not FailureKind.CONNECTION_DROPPED:
                    raise
                self._close()
                self.drops += 1
                self.in_a_row = 1 if self._moved() != self._moved_from else self.in_a_row + 1
                if self.in_a_row > 1 or self.drops > self._policy.max_drops:
                    self._discard_early()  # not a passing drop after all
                if self._early is None:
                    self._stored_anyway(settle, progress)
                    self._pause_or_give_up(e, progress)
            except CheckpointConflict:
                raise
            except StorageError as e:
                raise self._resumes_there(e, progress) from e

    def dropped(self, error: MailServerError,
                then: Callable[[Session], object] = lambda _: None) -> None:
        """The work's connection dropped (what arrived is still being stored as it raises
        ``error``): close it, and when the drop is passing start opening the next one, and
        doing ``then`` on it (the work's first step, such as selecting its folder again)."""
        self._close()
        passing = self.in_a_row == 0 or self._moved() != self._moved_from
        pause = self._policy.pause(1)
        if (not passing or self._early is not None or self.drops >= self._policy.max_drops
                or self._clock.monotonic() + pause >= self._time_box.ends):
            return  # decided as usual once the work raises
        self._say_reconnecting(error, pause, self.drops + 1, ", while what arrived is stored")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="reconnect",
                                            initializer=self._on_thread_start)
        self._early = self._pool.submit(self._open_after, pause, then)

    def _stored_anyway(self, settle: Callable[[], None], progress: Callable[[], str]) -> None:
        try:
            settle()
        except CheckpointConflict:
            raise
        except StorageError as e:  # storage first: reconnecting to the mail server would not help
            raise self._resumes_there(e, progress) from e

    def _resumes_there(self, error: StorageError, progress: Callable[[], str]) -> StorageError:
        return StorageError(f"{error} {self._address}: {progress()}; the next run resumes there.",
                            kind=error.kind)

    def _open_after(self, pause: float,
                    then: Callable[[Session], object]) -> tuple[ExitStack, Session]:
        self._policy.sleep(pause)
        stack = ExitStack()
        try:
            session = stack.enter_context(self._open_session())
            then(session)
            return stack, session
        except BaseException:
            stack.close()
            raise

    def _reopened(self) -> Session:
        """The session opened early, if any (its failure raised here), else a new one."""
        if self._early is None:
            return self._stack.enter_context(self._open_session())
        early, self._early = self._early, None
        self._stack, session = early.result()
        return session

    def _discard_early(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            with contextlib.suppress(Exception):  # its failure no longer matters
                early.result()[0].close()

    def _pause_or_give_up(self, error: MailServerError, progress: Callable[[], str]) -> None:
        policy = self._policy
        if self.in_a_row > policy.attempts or self.drops > policy.max_drops:
            how_often = (f"{self.in_a_row} times in a row with nothing delivered between"
                         if self.in_a_row > policy.attempts else f"{self.drops} times in this run")
            raise MailServerError(
                f"{self._address}: the connection dropped {how_often} (last: {error}); "
                f"{progress()}; the next run resumes there.",
                kind=FailureKind.CONNECTION_DROPPED) from error
        pause = policy.pause(self.in_a_row)
        now = self._clock.monotonic()
        if now + pause >= self._time_box.ends:
            why = "" if now >= self._time_box.ends else " No time is left to reconnect in this run."
            raise MailServerError(f"{error}{why} {progress()}; the next run resumes there.",
                                  kind=FailureKind.CONNECTION_DROPPED) from error
        streak = (f"; {self.in_a_row} in a row with nothing delivered between"
                  if self.in_a_row > 1 else "")
        self._say_reconnecting(error, pause, self.drops, "", streak)
        policy.sleep(pause)

    def _say_reconnecting(self, error: MailServerError, pause: float, drop: int, meanwhile: str,
                          streak: str = "") -> None:
        log.warning("%s: connection dropped (%s); reconnecting in %.2f s%s (drop %d of at most "
                    "%d in this run%s)", self._address, error, pause, meanwhile, drop,
                    self._policy.max_drops, streak)

    def _close(self) -> None:
        self._session = None
        try:
            self._stack.close()
        finally:
            self._stack = ExitStack()
