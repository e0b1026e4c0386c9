"""The fault profile: WAN plus Exchange's bad days, played by the fault fronts (devstack/faults).

One reset per ``MESSAGES_PER_RESET`` messages and one throttle (``Suggested Backoff Time:
5000 milliseconds``) during the run, at offsets drawn from a fixed seed so every run plays
the same script. What is judged: mailferry's throughput there against its own WAN throughput
on the same mailbox in the same run, and every message delivered exactly once. Pure: the
schedule, the delivery check, the targets and the report section.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

SEED = 20260309
MESSAGES_PER_RESET = 500
THROTTLE_MS = 5000
# Throughput under faults against the same mailbox on WAN without them (issue target).
SHARE_OF_WAN = 0.7
LABELS = {
    "front": "(c) mailferry through the fault fronts, none armed",
    "faults": "(c) mailferry under faults",
}
# Blob names end ".../<UIDVALIDITY>/<UID>.eml" (shared.naming).
_UID = re.compile(r"/(\d+)/(\d+)\.eml$")


@dataclass(frozen=True)
class FaultSchedule:
    """What the fronts do to one mailbox during the measured polls. Each fault is armed once
    that many messages are delivered and acts on the next ``UID FETCH`` of the open
    connection: a reset after ``at_byte`` message bytes of its response, or the throttle."""

    resets: list[tuple[int, int]]   # (messages delivered, message bytes into the FETCH)
    throttle_after: int
    backoff_ms: int = THROTTLE_MS

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fault_schedule(messages: int, size: int, batch: int, seed: int = SEED) -> FaultSchedule:
    """One reset in each block of ``MESSAGES_PER_RESET`` messages (at least one), armed at a
    seeded 10 to 70 % of its block and acting a seeded 10 to 90 % into a FETCH of ``batch``
    messages; one throttle, armed once a seeded 30 to 70 % of the messages are delivered."""
    rng = random.Random(seed)  # noqa: S311 - a repeatable script, not a secret
    blocks = max(1, round(messages / MESSAGES_PER_RESET))
    block = messages / blocks
    resets = [(int(block * (b + rng.uniform(0.1, 0.7))), int(batch * size * rng.uniform(0.1, 0.9)))
              for b in range(blocks)]
    throttle_after = max(1, int(messages * rng.uniform(0.3, 0.7)))
    return FaultSchedule(resets, throttle_after)


@dataclass(frozen=True)
class DeliveryCheck:
    """What landed in the container against the seeded mailbox."""

    blobs: int
    nbytes: int
    expected: int
    expected_bytes: int
    uids_more_than_once: int
    ids_more_than_once: int
    ids_missing: int

    @property
    def lost(self) -> int:
        return self.ids_missing

    @property
    def duplicated(self) -> int:
        return self.uids_more_than_once + self.ids_more_than_once

    @property
    def exact(self) -> bool:
        return (self.blobs == self.expected and self.nbytes == self.expected_bytes
                and self.lost == 0 and self.duplicated == 0)

    def describe(self) -> str:
        return (f"{self.blobs:,} blobs ({self.nbytes:,} B) for {self.expected:,} messages "
                f"({self.expected_bytes:,} B); lost {self.lost}, duplicated {self.duplicated} "
                f"(UIDs stored more than once {self.uids_more_than_once}, Message-IDs more "
                f"than once {self.ids_more_than_once})")


def check_delivery(blobs: Iterable[tuple[str, int, str]], expected_ids: Sequence[str],
                   expected_bytes: int) -> DeliveryCheck:
    """Each seeded Message-ID once, each (UIDVALIDITY, UID) once: ``blobs`` are
    (name, size, message_id metadata) as listed."""
    count = total = 0
    uids: dict[tuple[str, str], int] = {}
    ids: dict[str, int] = {}
    for name, size, message_id in blobs:
        count += 1
        total += size
        match = _UID.search(name)
        key = (match.group(1), match.group(2)) if match else (name, "")
        uids[key] = uids.get(key, 0) + 1
        ids[message_id] = ids.get(message_id, 0) + 1
    wanted = set(expected_ids)
    return DeliveryCheck(
        count, total, len(expected_ids), expected_bytes,
        uids_more_than_once=sum(n - 1 for n in uids.values()),
        ids_more_than_once=sum(n - 1 for i, n in ids.items() if i in wanted),
        ids_missing=len(wanted - set(ids)))


class FaultTarget(NamedTuple):
    """A target in the fields of ``bench.targets.Target``."""

    name: str
    target: str
    measured: str
    ratio: float | None
    met: bool | None


def _speed(faults: dict[str, Any], variant: str) -> float | None:
    value = faults.get("speed", {}).get(variant)
    return float(value) if value else None


def fault_targets(faults: dict[str, Any] | None) -> list[FaultTarget]:
    """Throughput under faults against WAN, and nothing lost or duplicated."""
    goal = (f"mailferry under faults ≥ {SHARE_OF_WAN:g} x its WAN throughput (same mailbox, "
            "same run)")
    exact_goal = "0 lost, 0 duplicated (blobs, bytes, every UID and Message-ID once)"
    if not faults or faults.get("status") != "ok":
        why = (faults or {}).get("status", "not measured")
        return [FaultTarget("WAN + faults vs WAN", goal, why, None, None),
                FaultTarget("Faults: exactly once", exact_goal, why, None, None)]
    under, wan, front = (_speed(faults, v) for v in ("faults", "mailferry", "front"))
    ratio = under / wan if under is not None and wan else None
    measured = (f"{under or 0:,.1f} vs {wan or 0:,.1f} msgs/s (fronts, none armed: "
                f"{front or 0:,.1f}); {faults['runs']} polls; {faults['resets_fired']} resets, "
                f"{faults['throttles_fired']} throttle of {faults['backoff_ms'] / 1000:g} s")
    return [
        FaultTarget("WAN + faults vs WAN", goal, measured, ratio,
                    None if ratio is None else ratio >= SHARE_OF_WAN),
        FaultTarget("Faults: exactly once", exact_goal, str(faults["delivery"]) + _rounds(faults),
                    None, bool(faults["exact"])),
    ]


def _rounds(faults: dict[str, Any]) -> str:
    rounds = faults.get("rounds") or []
    if len(rounds) < 2:
        return ""
    return ("; every round: lost " + "/".join(str(r["lost"]) for r in rounds) + ", duplicated "
            + "/".join(str(r["duplicated"]) for r in rounds))


def fault_section(faults: dict[str, Any] | None) -> list[str]:
    """The polls of the fault row, one line each, and what the fronts did."""
    if not faults:
        return []
    if faults.get("status") != "ok" and not faults.get("polls"):
        return ["## Fault profile", "", f"Not measured: {faults.get('status')}", ""]
    lines = ["## Fault profile", "",
             f"{faults['workload']} on WAN through the Exchange fault front: "
             f"{len(faults['resets'])} resets (one per {MESSAGES_PER_RESET} messages: each at "
             "the first `UID FETCH` after the given count of messages was delivered, that many "
             "message bytes into its response: "
             f"{', '.join(f'{n:,} / {b:,} B' for n, b in faults['resets'])}) and one throttle "
             f"(`NO ... Request is throttled. Suggested Backoff Time: {faults['backoff_ms']} "
             f"milliseconds`, then `* BYE`) at the first `UID FETCH` after "
             f"{faults['throttle_after']:,} messages were delivered; seed {faults['seed']}. "
             "Polls are `Poller.run` in one process; after a throttle the next poll starts once "
             "the mailbox's not-before time has passed (as the next timer run would), after any "
             "other unfinished poll at once. Seconds run from the first poll's start to the "
             "last poll's end, waits included.", "",
             "| poll | started at s | seconds | delivered | already stored | reconnects | "
             "ended |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for n, poll in enumerate(faults.get("polls", []), 1):
        lines.append(f"| {n} | {poll['at']:.1f} | {poll['seconds']:.1f} | {poll['delivered']:,} | "
                     f"{poll['already_present']:,} | {poll.get('reconnects', '—')} | "
                     f"{poll['ended']} |")
    lines += ["", f"Fronts: {faults['resets_fired']} resets and {faults['throttles_fired']} "
              f"throttles fired; {faults['connections']} IMAP connections. Busy "
              f"{faults['busy_seconds']:.1f} s of {faults['seconds']:.1f} s (the rest waited out "
              f"the back-off). Delivery: {faults['delivery']}.", ""]
    return lines
