"""How many queue messages one Functions instance works on at once, read from host.json.

The Storage queue trigger fetches ``batchSize`` messages and runs them concurrently, and
fetches the next batch once no more than ``newBatchThreshold`` are still running: up to
``batchSize + newBatchThreshold`` invocations at once per instance. The bench's fan-out
workers stand for instances, so they take messages the same way. Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
# The queue extension's own limits and defaults (host.json reference).
MAX_BATCH_SIZE = 32
DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class QueueTriggerLimits:
    """host.json ``extensions.queues.batchSize`` and ``newBatchThreshold``."""

    batch_size: int
    new_batch_threshold: int

    @property
    def concurrency(self) -> int:
        """The most messages one instance processes at once."""
        return self.batch_size + self.new_batch_threshold

    def batch_to_fetch(self, in_flight: int) -> int:
        """How many messages to ask the queue for while ``in_flight`` are being processed."""
        return self.batch_size if in_flight <= self.new_batch_threshold else 0

    def describe(self) -> str:
        return (f"host.json batchSize={self.batch_size}, newBatchThreshold="
                f"{self.new_batch_threshold}: up to {self.concurrency} at once per worker")


def queue_limits(host: dict[str, object]) -> QueueTriggerLimits:
    """The limits host.json's parsed text sets, with the extension's defaults for what it omits."""
    extensions = host.get("extensions")
    queues = extensions.get("queues", {}) if isinstance(extensions, dict) else {}
    if not isinstance(queues, dict):
        raise ValueError("host.json: extensions.queues must be an object")
    batch = queues.get("batchSize", DEFAULT_BATCH_SIZE)
    if not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH_SIZE:
        raise ValueError(f"host.json: extensions.queues.batchSize must be 1 to {MAX_BATCH_SIZE}, "
                         f"not {batch!r}")
    threshold = queues.get("newBatchThreshold", batch // 2)
    if not isinstance(threshold, int) or threshold < 0:
        raise ValueError("host.json: extensions.queues.newBatchThreshold must be 0 or more, "
                         f"not {threshold!r}")
    return QueueTriggerLimits(batch, threshold)


def read_queue_limits(path: Path = HOST_JSON) -> QueueTriggerLimits:
    """The queue trigger's limits from a host.json file."""
    host = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(host, dict):
        raise ValueError(f"{path}: not a JSON object")
    return queue_limits(host)
