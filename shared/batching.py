"""How an IMAP folder's new messages are cut into FETCH batches, and how far the checkpoint
may move as they are delivered."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

from shared.model import MessageInfo

# After this many batches in a row arrive whole, a batch halved by a drop doubles again.
GROW_AFTER = 4
MIN_BATCH_BYTES = 256 * 1024


class ContiguousPrefix:
    """The highest UID at or below which every UID of this run is delivered."""

    def __init__(self, start: int) -> None:
        self.through = start
        self._waiting: deque[int] = deque()
        self._done: set[int] = set()

    def expect(self, uids: Sequence[int]) -> None:
        """UIDs handed out for delivery, in ascending order. Those expected already (the
        rest of a batch a drop cut, fetched again) are not expected twice."""
        for uid in uids:
            # The highest expected: the last still waiting, else the prefix (all are done).
            if uid > (self._waiting[-1] if self._waiting else self.through):
                self._waiting.append(uid)

    def done(self, uid: int) -> None:
        self._done.add(uid)
        while self._waiting and self._waiting[0] in self._done:
            self._done.discard(self._waiting[0])
            self.through = self._waiting.popleft()


class BatchLimits:
    """How many messages and bytes one FETCH asks for: halved when the connection drops
    before a batch arrived whole on it (the batch may be what the link cannot carry: less
    to fetch again, less in flight), doubled back after GROW_AFTER batches in a row arrive
    whole, never above the configured limits. A drop after whole batches says nothing about
    their size, and smaller batches would only cost a round trip more per message."""

    def __init__(self, count: int, size: int) -> None:
        self.max_count, self.max_size = max(1, count), max(1, size)
        self.count, self.size = self.max_count, self.max_size
        self._whole = 0  # in a row, towards growing back
        self._whole_on_connection = 0  # since the last drop

    def dropped(self) -> None:
        if self._whole_on_connection == 0:
            self.count = max(1, self.count // 2)
            self.size = max(min(MIN_BATCH_BYTES, self.max_size), self.size // 2)
        self._whole = self._whole_on_connection = 0

    def arrived(self) -> None:
        self._whole_on_connection += 1
        self._whole += 1
        if self._whole >= GROW_AFTER:
            self.count = min(self.max_count, self.count * 2)
            self.size = min(self.max_size, self.size * 2)
            self._whole = 0


def plan_batches(infos: Sequence[MessageInfo], limits: BatchLimits, *,
                 large: int) -> Iterator[list[MessageInfo]]:
    """Group messages for fetching: at most ``limits.count`` each and about ``limits.size``
    bytes (read as each batch is cut, so a change applies to the next); a message of
    ``large`` bytes or more goes alone (it is streamed)."""
    batch: list[MessageInfo] = []
    total = 0
    for info in infos:
        if info.size >= large:
            if batch:
                yield batch
                batch, total = [], 0
            yield [info]
            continue
        if batch and (len(batch) >= limits.count or total + info.size > limits.size):
            yield batch
            batch, total = [], 0
        batch.append(info)
        total += info.size
    if batch:
        yield batch
