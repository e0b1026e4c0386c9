"""A folder's uploads and checkpoint writes in a run, which outlive a dropped connection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass

from shared.batching import ContiguousPrefix
from shared.delivery import ConcurrentDelivery
from shared.errors import CheckpointConflict, StorageError
from shared.model import FolderResult, PollOptions
from shared.ports import (
    CheckpointStore,
    Clock,
    MessageSink,
    PollObserver,
    ThreadStart,
    no_thread_setup,
)
from shared.time_box import TimeBox, TimeBoxedCalls

log = logging.getLogger("mailferry.poll")


@dataclass(frozen=True)
class FolderTools:
    """What every folder of a run delivers through."""

    sink: MessageSink
    checkpoints: CheckpointStore
    options: PollOptions
    clock: Clock
    observer: PollObserver
    on_thread_start: ThreadStart = no_thread_setup


class FolderFlow:
    """One folder's uploads, the contiguous prefix of UIDs they store and the time-boxed
    checkpoint writes, across the attempts of a run: a drop leaves the uploads running while
    the next session opens, and the next attempt hands the same flow more messages.
    ``stored(uid, through)`` hears each message settled and how far the prefix reached;
    ``write(through)`` moves the stored checkpoint up to ``through`` (on the flow's
    checkpoint thread, one write at a time)."""

    def __init__(self, tools: FolderTools, *, address: str, result: FolderResult,
                 time_box: TimeBox, start: int, stored: Callable[[int, int], None],
                 write: Callable[[int], None], what: str) -> None:
        self.prefix = ContiguousPrefix(start)
        self.handed: set[int] = set()  # UIDs given to the delivery, settled or not
        self._stored = stored
        self._write, self._what = write, what
        self._writing: Future[None] | None = None
        self._asked = start  # the highest prefix a write was started for
        self._failed = False  # a write failed: the last one is made whatever the prefix
        self._stack = ExitStack()
        self._calls = self._stack.enter_context(TimeBoxedCalls(
            tools.clock, time_box.writes_end, on_thread_start=tools.on_thread_start))
        self.delivery: ConcurrentDelivery[int] = self._stack.enter_context(ConcurrentDelivery(
            tools.sink, address=address, result=result, observer=tools.observer,
            concurrency=tools.options.upload_concurrency, on_stored=self._on_stored,
            clock=tools.clock, waits_end=time_box.waits_end, on_thread_start=tools.on_thread_start))

    def _on_stored(self, uid: int) -> None:
        self.prefix.done(uid)
        self._stored(uid, self.prefix.through)

    def save_soon(self) -> None:
        """Start moving the checkpoint up to the prefix and go on without waiting: storage
        answers a write behind the uploads it is busy with, and the next batch is fetched
        meanwhile. A write still running is left to finish (a later call catches up); an
        earlier one that failed raises its error here."""
        writing = self._writing
        if writing is not None:
            if not writing.done():
                return
            self._writing = None
            try:
                writing.result()
            except Exception:
                self._failed = True  # the last write tries again
                raise
        through = self.prefix.through
        if through > self._asked:
            self._asked = through
            self._writing = self._calls.start(self._what, lambda: self._write(through))

    def save(self) -> None:
        """Move the checkpoint up to the prefix and wait for it (after a write still running;
        one that failed is tried again with the newer prefix, a conflict is raised)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            try:
                self._calls.result(self._what, writing)
            except CheckpointConflict:
                raise
            except StorageError:
                if self._calls.gave_up:
                    raise
                self._failed = True
        through = self.prefix.through
        if through > self._asked or self._failed:
            self._asked, self._failed = through, False
            self._calls.call(self._what, lambda: self._write(through))

    def close(self, failure: BaseException | None, *, where: str) -> None:
        """Every upload finishes (or is given up at the time box) before the checkpoint moves
        (``save``); then the failure that stopped the attempt is raised, a storage failure
        first (reconnecting to the mail server would not help it)."""
        delivery = self.delivery
        with self._stack:
            delivery.settle()
            try:
                self.save()
            except StorageError as e:
                if isinstance(e, CheckpointConflict) or (delivery.failure or failure) is None:
                    raise
                # The failure that stopped the run says more; the checkpoint stands where it was.
                log.warning("%s: could not save the checkpoint: %s", where, e)
        if delivery.failure is not None:
            raise delivery.failure
        if failure is not None:
            raise failure


__all__ = ["FolderFlow", "FolderTools"]
