"""Fan-out mode: the timer enqueues one message per mailbox; worker processes (standing in
for Functions instances) each take messages from the queue and poll that one mailbox.

    python -m bench.fanout timer SPEC.json    # run_timer_poll in fan-out mode (enqueues)
    python -m bench.fanout worker SPEC.json   # start up, then receive → run_queue_poll →
                                              # delete, until idle

A worker first starts up as an instance would and times each step (imports, clients,
first token, first IMAP connection), then prints ``BENCH-READY {json}`` and waits for
messages. Each process ends with one ``BENCH-RESULT {json}`` line; times are wall-clock
(``time.time()``) so the parent can line up the processes.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

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
    sys.stdout.write(READY_PREFIX + json.dumps(startup) + "\n")
    sys.stdout.flush()
    queue = queue_module.QueueClient.from_connection_string(env["MAIL_STORAGE"], env["POLL_QUEUE"])
    idle_after_work = float(spec.get("idle_seconds", 2.0))
    give_up = time.monotonic() + float(spec.get("start_timeout", 120.0))
    processed = 0
    delivered = 0
    errors: list[str] = []
    first_at: float | None = None
    last_done: float | None = None
    idle_since = time.monotonic()
    reset_peak_rss()
    rss_base = current_rss_kb()
    c0 = cpu_seconds()
    while True:
        try:
            message = queue.receive_message(visibility_timeout=600)
        except not_found:
            message = None  # the timer has not created the queue yet
        now = time.monotonic()
        if message is None:
            if processed and now - idle_since >= idle_after_work:
                break
            if not processed and now >= give_up:
                break
            time.sleep(0.05)
            continue
        if first_at is None:
            first_at = time.time()
        try:
            outcome = queue_poll(decode_body(message.content),
                                 dequeue_count=int(message.dequeue_count or 1), env=env)
            delivered += int(getattr(outcome, "delivered", 0) or 0)
        except Exception as e:  # reported, and the message is left for a retry
            errors.append(f"{type(e).__name__}: {e}"[:300])
        else:
            queue.delete_message(message)
        processed += 1
        last_done = time.time()
        idle_since = time.monotonic()
    return Measured(not errors, count=delivered, cpu_seconds=cpu_seconds() - c0,
                    rss_base_kb=rss_base, rss_peak_kb=max(rss_base, peak_rss_kb()),
                    error="; ".join(errors[:3]) or None,
                    extra={"processed": processed, "first_at": first_at, "last_done": last_done,
                           "errors": len(errors), "startup": startup})


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
