"""The fronts' shared state: the scripted faults, what fired, and traffic counters.

Everything runs on one asyncio loop, so no locks: the relays and the control API take turns.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.faults.rules import Fault

log = logging.getLogger("devstack.faults")
MAX_EVENTS = 10_000


@dataclass
class MailboxTraffic:
    """Connections and commands of one mailbox on one protocol."""

    current: int = 0
    peak: int = 0
    total: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    bytes_to_client: int = 0
    bytes_from_client: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"current": self.current, "peak": self.peak, "total": self.total,
                "commands": dict(self.commands), "bytes_to_client": self.bytes_to_client,
                "bytes_from_client": self.bytes_from_client}


class Counters:
    """Traffic seen by the fronts since start or the last reset."""

    def __init__(self) -> None:
        self.mail: dict[tuple[str, str], MailboxTraffic] = {}
        self.storage: Counter[str] = Counter()

    def mailbox(self, protocol: str, mailbox: str) -> MailboxTraffic:
        key = (protocol, mailbox.lower())
        if key not in self.mail:
            self.mail[key] = MailboxTraffic()
        return self.mail[key]

    def opened(self, protocol: str, mailbox: str) -> MailboxTraffic:
        traffic = self.mailbox(protocol, mailbox)
        traffic.current += 1
        traffic.total += 1
        traffic.peak = max(traffic.peak, traffic.current)
        return traffic

    def to_json(self) -> dict[str, Any]:
        mail: dict[str, dict[str, Any]] = {}
        for (protocol, mailbox), traffic in self.mail.items():
            mail.setdefault(protocol, {})[mailbox] = traffic.to_json()
        return {"mail": mail, "storage": dict(self.storage)}

    def reset(self) -> None:
        """Forget totals; connections still open stay counted as current."""
        for traffic in self.mail.values():
            traffic.peak = traffic.current
            traffic.total = traffic.current
            traffic.commands.clear()
            traffic.bytes_to_client = traffic.bytes_from_client = 0
        self.storage.clear()


class FaultBook:
    """The live faults, keyed by id, and the log of faults that fired."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._faults: dict[int, Fault] = {}
        self._next_id = 1
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.counters = Counters()

    def add(self, fault: Fault) -> Fault:
        fault.id = self._next_id
        self._next_id += 1
        fault.used = 0
        fault.expires_at = self._clock() + fault.seconds if fault.seconds is not None else None
        self._faults[fault.id] = fault
        log.info("fault %d armed: %s %s %s", fault.id, fault.protocol, fault.kind, fault.mailbox)
        return fault

    def remove(self, fault_id: int) -> bool:
        return self._faults.pop(fault_id, None) is not None

    def clear(self, *, counters: bool = True) -> None:
        self._faults.clear()
        self.events.clear()
        if counters:
            self.counters.reset()

    def live(self) -> list[Fault]:
        now = self._clock()
        expired = [f.id for f in self._faults.values()
                   if f.expires_at is not None and f.expires_at <= now]
        for fault_id in expired:
            del self._faults[fault_id]
        return list(self._faults.values())

    def is_live(self, fault: Fault) -> bool:
        return fault.id in self._faults and (fault.expires_at is None or fault.expires_at > self._clock())

    def matching(self, protocol: str, kind: str, *, mailbox: str | None = None,
                 verb: str | None = None) -> list[Fault]:
        """Live mail faults of ``kind`` for ``mailbox`` (and ``verb``), oldest first."""
        return [f for f in self.live()
                if f.protocol == protocol and f.kind == kind and f.hits_mailbox(mailbox)
                and (verb is None or f.hits_command(verb))]

    def take(self, fault: Fault) -> bool:
        """Use ``fault`` once; False when it has expired or was used up meanwhile."""
        if not self.is_live(fault):
            return False
        fault.used += 1
        if fault.times is not None and fault.used >= fault.times:
            del self._faults[fault.id]
        return True

    def take_first(self, protocol: str, kind: str, *, mailbox: str | None = None,
                   verb: str | None = None) -> Fault | None:
        for fault in self.matching(protocol, kind, mailbox=mailbox, verb=verb):
            if self.take(fault):
                return fault
        return None

    def record(self, fault: Fault, detail: str, *, mailbox: str | None = None,
               service: str | None = None) -> None:
        """Log that ``fault`` fired (never with credentials in ``detail``)."""
        event = {"fault_id": fault.id, "kind": fault.kind, "protocol": fault.protocol,
                 "mailbox": mailbox, "service": service, "detail": detail, "at": time.time()}
        self.events.append(event)
        log.info("fault %d fired: %s %s %s: %s", fault.id, fault.protocol, fault.kind,
                 mailbox or service or "", detail)
