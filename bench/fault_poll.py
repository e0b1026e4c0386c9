"""The fault row's measuring process: polls one mailbox through the fault fronts until done.

    python -m bench.fault_poll SPEC.json

Arms the schedule's resets, polls with ``Poller.run`` (product defaults), arms the throttle
once enough messages are delivered, and polls again after each unfinished poll: once the
throttle's not-before time has passed, or at once after any other failure. Prints one
``BENCH-RESULT`` line (see :mod:`bench.measure`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.measure import Measured, Meter, child_main
from devstack._proc import LOOPBACK
from devstack.faults.client import FaultClient
from devstack.faults.server import CONFIG_NAME, PORTS_NAME, FrontConfig, FrontPorts
from shared.model import MailboxResult
from shared.settings import Settings
from shared.wiring import Components

# Enough for every reset to end a poll (3 reconnects each) and the throttle, and then some.
MAX_POLLS = 40


class FaultCue:
    """Counts delivered messages and arms each scheduled fault once its count is reached; the
    fronts play it on the next ``UID FETCH`` of the open connection."""

    def __init__(self, faults: FaultClient, address: str, schedule: dict[str, Any],
                 lifetime: float) -> None:
        self.faults = faults
        self.address = address
        self.lifetime = lifetime
        self.delivered = 0
        self.reset_ids: list[int] = []
        self.throttle_ids: list[int] = []
        cues: list[tuple[int, Callable[[], None]]] = [
            (int(after), partial(self._reset, int(at_byte))) for after, at_byte in schedule["resets"]]
        cues.append((int(schedule["throttle_after"]),
                     partial(self._throttle, int(schedule["backoff_ms"]))))
        self._cues = sorted(cues, key=lambda cue: cue[0])
        self._lock = threading.Lock()

    def _reset(self, at_byte: int) -> None:
        self.reset_ids.append(self.faults.reset(self.address, on="FETCH", at_byte=at_byte,
                                                in_literal=True, times=1, seconds=self.lifetime))

    def _throttle(self, backoff_ms: int) -> None:
        # Exchange's words, then BYE, as it ends a throttled session.
        self.throttle_ids.append(self.faults.throttle(self.address, on="FETCH", backoff_ms=backoff_ms,
                                                      bye=True, times=1, seconds=self.lifetime))

    def mailbox_started(self, address: str) -> None:
        pass

    def message_delivered(self, address: str, size: int) -> None:
        with self._lock:
            self.delivered += 1
            while self._cues and self._cues[0][0] <= self.delivered:
                self._cues.pop(0)[1]()

    def mailbox_finished(self, result: MailboxResult) -> None:
        pass


def control_of(directory: Path) -> FaultClient:
    """The control API of the fronts whose state is in ``directory``."""
    ports = FrontPorts.load(directory / PORTS_NAME)
    return FaultClient(f"http://{LOOPBACK}:{ports.control}", FrontConfig.load(directory / CONFIG_NAME).key)


def _ended(result: MailboxResult) -> str:
    if result.complete:
        return "complete"
    if result.throttled_until is not None:
        return f"throttled ({result.error or ''})"[:160]
    if result.skipped is not None:
        return f"skipped: {result.skipped}"[:160]
    return f"{result.error_type}: {result.error or 'time box reached'}"[:160]


def run_fault_poll(spec: dict[str, Any]) -> Measured:
    env: dict[str, str] = spec["env"]
    os.environ.update({k: env[k] for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER") if k in env})
    settings = Settings.from_mapping(env)
    poller = Components(settings).poller
    faults = control_of(Path(spec["faults_dir"]))
    address: str = spec["address"]
    schedule = spec["schedule"]
    lifetime = float(spec.get("timeout", 1800.0))
    faults.clear()
    cue = FaultCue(faults, address, schedule, lifetime)
    polls: list[dict[str, Any]] = []
    with Meter() as meter:
        started = time.perf_counter()
        while len(polls) < MAX_POLLS:
            before = faults.connections(address).total
            at = time.perf_counter() - started
            [result] = poller.run(settings.mailboxes, cue).mailboxes
            folders = result.folders
            polls.append({"at": at, "seconds": time.perf_counter() - started - at,
                          "delivered": result.delivered,
                          "already_present": sum(f.already_present for f in folders),
                          "reconnects": max(0, faults.connections(address).total - before - 1),
                          "ended": _ended(result)})
            if result.complete:
                break
            if result.throttled_until is not None:
                # The next timer run that may poll it: just after the not-before time.
                wait = (result.throttled_until - datetime.now(UTC)).total_seconds()
                time.sleep(max(0.0, wait) + 0.05)
    events = faults.events()
    measured = meter.result(
        sum(p["delivered"] for p in polls), 0, polls=polls,
        busy_seconds=sum(p["seconds"] for p in polls),
        resets_fired=sum(1 for e in events if e.fault_id in cue.reset_ids),
        throttles_fired=sum(1 for e in events if e.fault_id in cue.throttle_ids),
        connections=faults.connections(address).total)
    faults.clear()
    if not polls or polls[-1]["ended"] != "complete":
        measured.ok = False
        measured.error = f"not complete after {len(polls)} polls: {polls[-1]['ended'] if polls else ''}"
    return measured


def main(argv: list[str] | None = None) -> int:
    return child_main(run_fault_poll, argv)


if __name__ == "__main__":
    raise SystemExit(main())
