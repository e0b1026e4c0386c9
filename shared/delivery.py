"""Delivering messages concurrently and counting what each delivery did: one piece for the
IMAP and the POP3 poll."""

from __future__ import annotations

import concurrent.futures
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, auto
from types import TracebackType
from typing import Generic, TypeVar

from shared.errors import FailureKind, StorageError
from shared.model import FolderResult
from shared.ports import Clock, MessageSink, PollObserver, ThreadStart, no_thread_setup
from shared.time_box import wait_left

Key = TypeVar("Key", bound=Hashable)


class Outcome(Enum):
    """What delivering one message did."""

    CREATED = auto()  # a new blob
    PRESENT = auto()  # its blob existed: an earlier run delivered it
    SKIPPED = auto()  # nothing to write: a duplicate after a resync, or gone from the server


@dataclass(frozen=True)
class Written:
    """One message's outcome and size."""

    outcome: Outcome
    size: int = 0


SKIPPED = Written(Outcome.SKIPPED)


class ConcurrentDelivery(Generic[Key]):
    """Uploads messages on a pool of threads and settles them oldest first, counting each
    outcome in ``result``; ``on_stored`` hears the key of each message that is safely
    stored (or needed no write). A failed upload is kept in ``failure``; the others go on.

    Waiting ends at ``waits_end`` (a ``clock`` time): uploads still running then are given
    up (their blobs may still land; a later run finds them) so storage cannot hold a run
    past its time box.
    """

    def __init__(self, sink: MessageSink, *, address: str, result: FolderResult,
                 observer: PollObserver, concurrency: int, on_stored: Callable[[Key], None],
                 clock: Clock, waits_end: float,
                 on_thread_start: ThreadStart = no_thread_setup) -> None:
        self._sink = sink
        self._address = address
        self._result = result
        self._watcher = observer
        self._on_stored = on_stored
        self._clock = clock
        self._waits_end = waits_end
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="upload",
                                        initializer=on_thread_start)
        self._pending: deque[tuple[Key, Future[Written], datetime | None]] = deque()
        self._gave_up = False
        self.failure: BaseException | None = None

    def __enter__(self) -> ConcurrentDelivery[Key]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.settle()
        # Uploads given up on are not waited for: the run must end on time.
        self._pool.shutdown(wait=not self._gave_up, cancel_futures=True)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def upload(self, key: Key, name: str, raw: bytes, metadata: Mapping[str, str],
               internal_date: datetime | None = None) -> None:
        """Start writing one message's blob."""
        self._pending.append((key, self._pool.submit(self._create, name, raw, metadata),
                              internal_date))

    def done(self, key: Key, written: Written, internal_date: datetime | None = None) -> None:
        """A delivery carried out by the caller (streamed, or skipped), settled in its turn."""
        future: Future[Written] = Future()
        future.set_result(written)
        self._pending.append((key, future, internal_date))

    def failed(self, key: Key, error: BaseException) -> None:
        """A delivery that failed in the caller, settled in its turn."""
        future: Future[Written] = Future()
        future.set_exception(error)
        self._pending.append((key, future, None))

    def settle(self, *, leave: int = 0) -> None:
        """Wait for the oldest deliveries until at most ``leave`` are pending; count them."""
        while len(self._pending) > leave:
            key, future, internal_date = self._pending[0]
            wait = wait_left(self._clock, self._waits_end)
            if not concurrent.futures.wait([future], timeout=wait).done:
                self._give_up()
                return
            self._pending.popleft()
            if future.cancelled():
                continue
            try:
                written = future.result()
            except Exception as e:
                self._fail(e)
                continue
            self._count(written, internal_date)
            self._on_stored(key)

    def _fail(self, error: Exception) -> None:
        """Keep the first failure; uploads not started yet are not started at all (storage
        that failed one after its retries is not asked again in this run)."""
        if self.failure is None:
            self.failure = error
            for _, future, _ in self._pending:
                future.cancel()

    def _give_up(self) -> None:
        self._gave_up = True
        self.failure = self.failure or StorageError(
            f"{len(self._pending)} upload(s) were still running when the run's time box ended "
            "(storage is slow or not answering); they are not counted as delivered",
            kind=FailureKind.STORAGE_UNREACHABLE)
        self._pending.clear()

    def _create(self, name: str, raw: bytes, metadata: Mapping[str, str]) -> Written:
        created = self._sink.create(name, raw, metadata)
        return Written(Outcome.CREATED if created else Outcome.PRESENT, len(raw))

    def _count(self, written: Written, internal_date: datetime | None) -> None:
        result = self._result
        if written.outcome is Outcome.CREATED:
            result.delivered += 1
            result.bytes_delivered += written.size
            newest = result.newest_internal_date
            if internal_date is not None and (newest is None or internal_date > newest):
                result.newest_internal_date = internal_date
            self._watcher.message_delivered(self._address, written.size)
        elif written.outcome is Outcome.PRESENT:
            result.already_present += 1
