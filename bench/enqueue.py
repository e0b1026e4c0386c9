"""How fast the fan-out timer queues its poll messages, by number of concurrent senders.

    python -m bench.enqueue SPEC.json

For each sender count: ``shared.fanout.enqueue_polls`` sends one poll message per mailbox
through the composition root's queue client (``Components.poll_queue``) into a fresh queue, timed; the
queue's message count is read back. Prints one ``BENCH-RESULT {json}`` line.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

from azure.storage.queue import QueueClient

from bench.measure import Measured, Meter, child_main

Spec = dict[str, Any]
POOL_LOGGER = "mailferry.storage.pool"


class DiscardCount(logging.Handler):
    """Counts the storage transport's 'connection pool is full' records (debug level)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "pool is full" in record.getMessage():
            self.count += 1


def default_senders() -> int:
    """The product's default number of concurrent sends."""
    from shared.fanout import enqueue_polls  # noqa: PLC0415

    default = inspect.signature(enqueue_polls).parameters["concurrency"].default
    return int(default)


def run_enqueue(spec: Spec) -> Measured:
    env: dict[str, str] = spec["env"]
    os.environ.update({k: env[k] for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER") if k in env})
    from shared.fanout import enqueue_polls  # noqa: PLC0415
    from shared.settings import MailboxConfig  # noqa: PLC0415
    from shared.wiring import Components, load_settings  # noqa: PLC0415

    count = int(spec["mailboxes"])
    mailboxes = [MailboxConfig(f"box{i:05d}@bench.example") for i in range(count)]
    discards = DiscardCount()
    logging.getLogger(POOL_LOGGER).addHandler(discards)
    logging.getLogger(POOL_LOGGER).setLevel(logging.DEBUG)
    runs: list[dict[str, Any]] = []
    total_seconds = total_cpu = 0.0
    for senders in spec["senders"]:
        name = f"{spec['queue_prefix']}-{senders}"
        queue = Components(load_settings({**env, "POLL_QUEUE": name})).poll_queue
        discards.count = 0
        with Meter() as meter:
            sent = enqueue_polls(queue, mailboxes, concurrency=int(senders))
        properties = QueueClient.from_connection_string(
            env["MAIL_STORAGE"], name).get_queue_properties()
        queued = int(properties.approximate_message_count or 0)
        runs.append({"senders": int(senders), "sent": sent, "queued": queued,
                     "seconds": meter.seconds, "cpu_seconds": meter.cpu,
                     "msgs_per_s": count / meter.seconds if meter.seconds else None,
                     "discarded_connections": discards.count})
        total_seconds += meter.seconds
        total_cpu += meter.cpu
    result = Measured(True, count, 0, total_seconds, total_cpu,
                      extra={"runs": runs, "default": default_senders(), "mailboxes": count})
    short = [r for r in runs if r["queued"] != count]
    if short:
        result.ok = False
        result.error = (f"{short[0]['queued']} messages in the queue for {count} mailboxes "
                        f"with {short[0]['senders']} senders")
    return result


def main(argv: list[str] | None = None) -> int:
    return child_main(run_enqueue, argv)


if __name__ == "__main__":
    raise SystemExit(main())
