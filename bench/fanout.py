"""Fan-out mode: the timer enqueues one message per mailbox; worker processes (standing in
for Functions instances) each take messages from the queue and poll that one mailbox.

    python -m bench.fanout timer SPEC.json    # run_timer_poll in fan-out mode (enqueues)
    python -m bench.fanout worker SPEC.json   # start up, then receive → run_queue_poll →
                                              # delete, until idle

A worker first starts up as an instance would and times each step (imports, clients,
first token, first IMAP connection), then prints ``BENCH-READY {json}`` and takes messages
as the Functions host's queue listener would with host.json's ``extensions.queues``: a
batch of ``batchSize`` messages whenever no more than ``newBatchThreshold`` are being
processed, each on its own thread (a sync Python function runs on the worker's thread
pool). Each process ends with one ``BENCH-RESULT {json}`` line; times are wall-clock
(``time.time()``) so the parent can line up the processes.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.host_queue import QueueTriggerLimits
from bench.measure import (
    RESULT_PREFIX,
    Measured,
    cpu_seconds,
    current_rss_kb,
    peak_rss_kb,
    reset_peak_rss,
)

NOT_AVAILABLE = "not available"
READY_PREFIX = "BENCH-READY "


def decode_body(content: Any) -> str:
    """The queue message text as a Functions queue trigger would pass it.

    The Functions host base64-decodes queue messages by default, so a producer may have
    encoded them; plain text (JSON or an address) is passed through unchanged.
    """
    if isinstance(content, bytes):
        content = content.decode("utf-8")
    text = str(content)
    stripped = text.strip()
    if stripped.startswith(("{", "[", '"')) or "@" in stripped:
        return text
    try:
        decoded = base64.b64decode(stripped, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return text
    return decoded


def _emit(result: Measured) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(result.to_json()) + "\n")
    sys.stdout.flush()


def _entry_functions() -> tuple[Any, Any] | None:
    try:
        entry = importlib.import_module("shared.entry")
    except ImportError:
        return None
    timer = getattr(entry, "run_timer_poll", None)
    queue = getattr(entry, "run_queue_poll", None)
    if timer is None or queue is None:
        return None
    return timer, queue


def run_timer(spec: dict[str, Any]) -> Measured:
    env: dict[str, str] = spec["env"]
    os.environ.update({k: env[k] for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER") if k in env})
    functions = _entry_functions()
    if functions is None:
        return Measured(False, error=f"{NOT_AVAILABLE}: shared.entry.run_queue_poll is missing")
    timer, _ = functions
    started = time.time()
    c0 = cpu_seconds()
    timer(past_due=False, env=env)
    return Measured(True, seconds=time.time() - started, cpu_seconds=cpu_seconds() - c0,
                    extra={"started": started, "finished": time.time()})


def start_up(env: dict[str, str], probe_mailbox: str) -> dict[str, float]:
    """What a cold instance does before its first poll, step by step, in seconds."""
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    importlib.import_module("function_app")
    wiring = importlib.import_module("shared.wiring")  # loaded on the first invocation
    t1 = time.perf_counter()
    phases["imports (function_app, shared.wiring)"] = t1 - t0
    settings = wiring.load_settings(env)
    components = wiring.components_for(settings)
    poller = components.poller
    assert components.queue_worker is not None  # built now, as the first invocation builds it
    t2 = time.perf_counter()
    phases["clients built, container and table ensured"] = t2 - t1
    token = poller.tokens.get_token()
    t3 = time.perf_counter()
    phases["first token (Key Vault secret, Entra token)"] = t3 - t2
    with poller.server.open(probe_mailbox, token):
        pass
    t4 = time.perf_counter()
    phases["first IMAP connection (TLS, AUTHENTICATE, LOGOUT)"] = t4 - t3
    with poller.server.open(probe_mailbox, poller.tokens.get_token()):
        pass
    phases["next IMAP connection, for comparison"] = time.perf_counter() - t4
    return phases


class QueueListener:
    """Takes messages from the queue as the host's queue trigger would (see
    :class:`bench.host_queue.QueueTriggerLimits`) and runs each on a thread of its own."""

    def __init__(self, queue: Any, limits: QueueTriggerLimits, poll: Callable[[Any], int],
                 not_found: type[BaseException]) -> None:
        self.queue = queue
        self.limits = limits
        self.poll = poll
        self.not_found = not_found
        self.lock = threading.Lock()
        self.processed = 0
        self.delivered = 0
        self.peak_in_flight = 0
        self.errors: list[str] = []
        self.first_at: float | None = None
        self.last_done: float | None = None

    def _handle(self, message: Any) -> None:
        error: str | None = None
        delivered = 0
        try:
            delivered = self.poll(message)
        except Exception as e:  # reported, and the message is left for a retry
            error = f"{type(e).__name__}: {e}"[:300]
        else:
            self.queue.delete_message(message)
        with self.lock:
            self.processed += 1
            self.delivered += delivered
            if error is not None:
                self.errors.append(error)
            self.last_done = time.time()

    def _fetch(self, count: int) -> list[Any]:
        try:
            return list(self.queue.receive_messages(messages_per_page=count, max_messages=count,
                                                    visibility_timeout=600))
        except self.not_found:
            return []  # the timer has not created the queue yet

    def run(self, idle_seconds: float, start_timeout: float) -> None:
        """Until the queue has stayed empty ``idle_seconds`` with nothing running (or no
        message came within ``start_timeout``)."""
        give_up = time.monotonic() + start_timeout
        idle_since = time.monotonic()
        running: set[Future[None]] = set()
        with ThreadPoolExecutor(self.limits.concurrency, thread_name_prefix="invocation") as pool:
            while True:
                running = {f for f in running if not f.done()}
                wanted = self.limits.batch_to_fetch(len(running))
                messages = self._fetch(wanted) if wanted else []
                if messages and self.first_at is None:
                    self.first_at = time.time()
                for message in messages:
                    running.add(pool.submit(self._handle, message))
                self.peak_in_flight = max(self.peak_in_flight, len(running))
                now = time.monotonic()
                if running or messages:
                    idle_since = now
                elif now >= (idle_since + idle_seconds if self.processed else give_up):
                    break
                if not messages:
                    time.sleep(0.05)


def run_worker(spec: dict[str, Any]) -> Measured:
    env: dict[str, str] = spec["env"]
    os.environ.update({k: env[k] for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER") if k in env})
    startup = start_up(env, spec["probe_mailbox"])  # first: nothing of the product loaded yet
    functions = _entry_functions()
    if functions is None:
        return Measured(False, error=f"{NOT_AVAILABLE}: shared.entry.run_queue_poll is missing")
    _, queue_poll = functions
    try:
        queue_module = importlib.import_module("azure.storage.queue")
    except ImportError as e:
        return Measured(False, error=f"{NOT_AVAILABLE}: {e}")
    not_found = importlib.import_module("azure.core.exceptions").ResourceNotFoundError
    limits = QueueTriggerLimits(int(spec.get("batch_size", 1)),
                                int(spec.get("new_batch_threshold", 0)))
    sys.stdout.write(READY_PREFIX + json.dumps(startup) + "\n")
    sys.stdout.flush()
    queue = queue_module.QueueClient.from_connection_string(env["MAIL_STORAGE"], env["POLL_QUEUE"])

    def poll(message: Any) -> int:
        outcome = queue_poll(decode_body(message.content),
                             dequeue_count=int(message.dequeue_count or 1), env=env)
        return int(getattr(outcome, "delivered", 0) or 0)

    listener = QueueListener(queue, limits, poll, not_found)
    reset_peak_rss()
    rss_base = current_rss_kb()
    c0 = cpu_seconds()
    listener.run(float(spec.get("idle_seconds", 2.0)), float(spec.get("start_timeout", 120.0)))
    errors = listener.errors
    return Measured(not errors, count=listener.delivered, cpu_seconds=cpu_seconds() - c0,
                    rss_base_kb=rss_base, rss_peak_kb=max(rss_base, peak_rss_kb()),
                    error="; ".join(errors[:3]) or None,
                    extra={"processed": listener.processed, "first_at": listener.first_at,
                           "last_done": listener.last_done, "errors": len(errors),
                           "startup": startup, "peak_in_flight": listener.peak_in_flight})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    role, spec_path = args[0], args[1]
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
    try:
        result = run_timer(spec) if role == "timer" else run_worker(spec)
    except Exception as e:
        traceback.print_exc()
        result = Measured(False, error=f"{type(e).__name__}: {e}"[:500])
    _emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
