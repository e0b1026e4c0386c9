"""Typed calls to the fronts' control API, for tests and benchmarks.

Every fault method returns the fault's id and ends by itself after ``times`` uses or
``seconds`` (whichever comes first; pass ``times=None`` for a time-only fault). Mail faults
are keyed by the login name in AUTHENTICATE (``"*"``: every mailbox) and act once that name is
known; offsets (``at_byte``) count bytes to the client (``direction="client"``: from it) from
the connection's first byte, or from the start of the response to the command ``on`` names,
or with ``in_literal`` message bytes only (FETCH literals, RETR bodies). A fault armed
while a connection is open reaches it at its next command; an offset already passed acts at
once.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from devstack.faults.control import KEY_HEADER
from devstack.faults.imap_wire import ARGUMENT_ERROR, AUTH_FAILED, NOT_CONNECTED, THROTTLED
from devstack.faults.pop3_front import AUTH_FAILED as POP3_AUTH_FAILED
from devstack.faults.rules import FaultError

Protocol = Literal["imap", "pop3"]
Service = Literal["blob", "queue", "table"]
Verbs = str | Sequence[str] | None


@dataclass(frozen=True)
class Connections:
    """Connections whose AUTHENTICATE named a mailbox: open now, most at once, all."""

    current: int
    peak: int
    total: int


@dataclass(frozen=True)
class FaultEvent:
    """A fault that fired: what it did (``detail``), to whom, and when (epoch seconds)."""

    fault_id: int
    kind: str
    protocol: str
    mailbox: str | None
    service: str | None
    detail: str
    at: float


def _verbs(on: Verbs, protocol: str) -> list[str]:
    names = [on] if isinstance(on, str) else list(on or ())
    if protocol == "pop3":  # POP3 logs in with AUTH
        names = ["AUTH" if n.upper() == "AUTHENTICATE" else n for n in names]
    return [n.upper() for n in names]


class FaultClient:
    """The control API of running fronts."""

    def __init__(self, base_url: str, key: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._timeout = timeout
        # Loopback only: never through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- IMAP and POP3 ------------------------------------------------------------------
    def throttle(self, mailbox: str, *, on: Verbs = "AUTHENTICATE", backoff_ms: int = 300_000,
                 status: Literal["NO", "BAD", "BYE"] = "NO", bye: bool = False, times: int | None = 1,
                 seconds: float | None = None, protocol: Protocol = "imap") -> int:
        """Exchange's throttling: ``<tag> NO Request is throttled. Suggested Backoff Time: N
        milliseconds`` (POP3: ``-ERR …``), with ``bye`` followed by ``* BYE Connection closed. 14``;
        ``status="BYE"`` sends the words in an untagged BYE instead."""
        return self.answer(mailbox, on=on, status=status, text=THROTTLED.format(ms=backoff_ms), bye=bye,
                           times=times, seconds=seconds, protocol=protocol)

    def answer(self, mailbox: str, *, on: Verbs, status: str, text: str, bye: bool = False,
               times: int | None = 1, seconds: float | None = None, protocol: Protocol = "imap") -> int:
        """Answer the commands ``on`` names (``"ANY"``: any) with ``status text`` instead of relaying."""
        if protocol == "pop3":
            status = "-ERR"
        return self.add({"kind": "answer", "protocol": protocol, "mailbox": mailbox,
                         "on": _verbs(on, protocol), "status": status, "text": text, "bye": bye,
                         "times": times, "seconds": seconds})

    def not_connected(self, mailbox: str, *, on: Verbs = "AUTHENTICATE", times: int | None = 1,
                      seconds: float | None = None, protocol: Protocol = "imap") -> int:
        """``BAD User is authenticated but not connected.``"""
        return self.answer(mailbox, on=on, status="BAD", text=NOT_CONNECTED, times=times, seconds=seconds,
                           protocol=protocol)

    def auth_failed(self, mailbox: str, *, times: int | None = 1, seconds: float | None = None,
                    protocol: Protocol = "imap") -> int:
        """``NO AUTHENTICATE failed.`` (POP3: ``-ERR Authentication failure: …``)."""
        text = AUTH_FAILED if protocol == "imap" else POP3_AUTH_FAILED
        return self.answer(mailbox, on="AUTHENTICATE", status="NO", text=text, times=times,
                           seconds=seconds, protocol=protocol)

    def argument_error(self, mailbox: str, *, on: Verbs = "FETCH", times: int | None = 1,
                       seconds: float | None = None, protocol: Protocol = "imap") -> int:
        """``BAD Command Argument Error. 11``."""
        return self.answer(mailbox, on=on, status="BAD", text=ARGUMENT_ERROR, times=times, seconds=seconds,
                           protocol=protocol)

    def bye(self, mailbox: str, *, after_commands: int | None = None, at_byte: int | None = None,
            on: Verbs = None, in_literal: bool = False, text: str = "Connection closed. 14",
            times: int | None = 1, seconds: float | None = None, protocol: Protocol = "imap") -> int:
        """``* BYE text`` and close: instead of the answer to the first command (matching ``on``)
        after ``after_commands`` commands since login, or once ``at_byte`` bytes reached the client.
        Inside a response (mid-literal) the front closes without the BYE line, which the client
        would read as message bytes. POP3 has no BYE: the connection just closes."""
        return self.add({"kind": "bye", "protocol": protocol, "mailbox": mailbox, "on": _verbs(on, protocol),
                         "after_commands": after_commands, "at_byte": at_byte, "in_literal": in_literal,
                         "bye_text": text, "times": times, "seconds": seconds})

    def reset(self, mailbox: str, *, at_byte: int = 0, direction: Literal["server", "client"] = "server",
              on: Verbs = None, in_literal: bool = False, times: int | None = 1,
              seconds: float | None = None, protocol: Protocol = "imap") -> int:
        """An RST to the client (SO_LINGER 0) at ``at_byte`` in ``direction``."""
        return self.add({"kind": "reset", "protocol": protocol, "mailbox": mailbox, "at_byte": at_byte,
                         "direction": direction, "on": _verbs(on, protocol), "in_literal": in_literal,
                         "times": times, "seconds": seconds})

    def stall(self, mailbox: str, *, duration: float, at_byte: int = 0, on: Verbs = None,
              in_literal: bool = False, then: Literal["continue", "close"] = "continue",
              times: int | None = 1, seconds: float | None = None, protocol: Protocol = "imap") -> int:
        """Send nothing to the client for ``duration`` seconds at ``at_byte``, then go on or close."""
        return self.add({"kind": "stall", "protocol": protocol, "mailbox": mailbox, "duration": duration,
                         "at_byte": at_byte, "on": _verbs(on, protocol), "in_literal": in_literal,
                         "then": then, "times": times, "seconds": seconds})

    def trickle(self, mailbox: str, *, interval: float = 1.0, duration: float = 60.0, at_byte: int = 0,
                on: Verbs = None, in_literal: bool = False, times: int | None = 1,
                seconds: float | None = None, protocol: Protocol = "imap") -> int:
        """From ``at_byte`` on, one byte every ``interval`` seconds for ``duration`` seconds."""
        return self.add({"kind": "trickle", "protocol": protocol, "mailbox": mailbox, "interval": interval,
                         "duration": duration, "at_byte": at_byte, "on": _verbs(on, protocol),
                         "in_literal": in_literal, "times": times, "seconds": seconds})

    def size_factor(self, mailbox: str, factor: float, *, times: int | None = 1,
                    seconds: float | None = None) -> int:
        """``RFC822.SIZE`` times ``factor`` in FETCH responses, for ``times`` sessions."""
        return self.add({"kind": "size_factor", "protocol": "imap", "mailbox": mailbox, "factor": factor,
                         "times": times, "seconds": seconds})

    def max_connections(self, mailbox: str, limit: int, *, times: int | None = 1,
                        seconds: float | None = None, protocol: Protocol = "imap") -> int:
        """With ``limit`` connections open, the next AUTHENTICATE gets ``BAD User is
        authenticated but not connected.``; ``times`` counts refusals."""
        return self.add({"kind": "max_connections", "protocol": protocol, "mailbox": mailbox,
                         "limit": limit, "times": times, "seconds": seconds})

    def hide_move(self, mailbox: str, *, times: int | None = 1, seconds: float | None = None) -> int:
        """No MOVE after login for ``times`` sessions; a MOVE gets ``BAD Command Error. 12``."""
        return self.add({"kind": "hide_move", "protocol": "imap", "mailbox": mailbox, "times": times,
                         "seconds": seconds})

    # -- storage ------------------------------------------------------------------------
    def storage_busy(self, *, times: int | None = 1, seconds: float | None = None,
                     service: Service | None = None, method: str | None = None,
                     path_prefix: str | None = None, when: Literal["before", "after"] = "before") -> int:
        """503 ``ServerBusy`` (``x-ms-error-code`` and Azure's error body) for matching requests;
        ``when="after"``: Azurite carried the request out, the client is told 503."""
        return self._storage("busy", times, seconds, service, method, path_prefix, when)

    def storage_error(self, *, times: int | None = 1, seconds: float | None = None,
                      service: Service | None = None, method: str | None = None,
                      path_prefix: str | None = None, when: Literal["before", "after"] = "before") -> int:
        """500 ``InternalError`` for matching requests."""
        return self._storage("error", times, seconds, service, method, path_prefix, when)

    def storage_reset(self, *, times: int | None = 1, seconds: float | None = None,
                      service: Service | None = None, method: str | None = None,
                      path_prefix: str | None = None, when: Literal["before", "after"] = "before") -> int:
        """An RST instead of the response to matching requests."""
        return self._storage("reset", times, seconds, service, method, path_prefix, when)

    def storage_stall(self, *, duration: float, then: Literal["continue", "close"] = "continue",
                      times: int | None = 1, seconds: float | None = None, service: Service | None = None,
                      method: str | None = None, path_prefix: str | None = None,
                      when: Literal["before", "after"] = "before") -> int:
        """Hold matching requests ``duration`` seconds (before Azurite sees them, or before the
        client gets Azurite's answer), then go on or close."""
        return self._storage("stall", times, seconds, service, method, path_prefix, when,
                             duration=duration, then=then)

    def storage_outage(self, seconds: float, *, service: Service | None = None) -> int:
        """Refuse connections (listener closed, open connections reset) for ``seconds``."""
        return self.add({"kind": "outage", "protocol": "storage", "service": service, "seconds": seconds,
                         "times": None})

    def _storage(self, kind: str, times: int | None, seconds: float | None, service: str | None,
                 method: str | None, path_prefix: str | None, when: str, **extra: Any) -> int:
        return self.add({"kind": kind, "protocol": "storage", "times": times, "seconds": seconds,
                         "service": service, "method": method, "path_prefix": path_prefix, "when": when,
                         **extra})

    # -- administration and counters ---------------------------------------------------
    def add(self, fault: Mapping[str, Any]) -> int:
        """Arm a fault given in its JSON form (see ``devstack.faults.rules.Fault``)."""
        fault_id: int = self._call("POST", "/faults", dict(fault))["id"]
        return fault_id

    def remove(self, fault_id: int) -> bool:
        removed: bool = self._call("DELETE", f"/faults/{fault_id}")["removed"]
        return removed

    def clear(self, *, counters: bool = True) -> None:
        """End every fault and outage; with ``counters`` also forget counters and events."""
        self._call("POST", "/clear", {"counters": counters})

    def live_faults(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self._call("GET", "/faults")
        return faults

    def events(self, *, fault_id: int | None = None, kind: str | None = None,
               mailbox: str | None = None) -> list[FaultEvent]:
        """Faults that fired, oldest first, optionally only those matching the filters."""
        events = [FaultEvent(**e) for e in self._call("GET", "/events")]
        return [e for e in events if (fault_id is None or e.fault_id == fault_id)
                and (kind is None or e.kind == kind)
                and (mailbox is None or e.mailbox == mailbox.lower())]

    def wait_for_event(self, fault_id: int, *, count: int = 1, timeout: float = 30.0) -> list[FaultEvent]:
        """The fault's events once there are ``count`` of them; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events(fault_id=fault_id)
            if len(events) >= count:
                return events
            if time.monotonic() >= deadline:
                raise TimeoutError(f"fault {fault_id} fired {len(events)} of {count} times in {timeout:g}s")
            time.sleep(0.05)

    def mailbox_counts(self, mailbox: str, protocol: Protocol = "imap") -> dict[str, Any]:
        """``current``, ``peak``, ``total``, ``commands`` (verb → n), ``bytes_to_client``,
        ``bytes_from_client`` for a mailbox (zeros when it never connected)."""
        mail = self._call("GET", "/counters")["mail"]
        counts: dict[str, Any] = mail.get(protocol, {}).get(mailbox.lower(), {})
        return {"current": 0, "peak": 0, "total": 0, "commands": {}, "bytes_to_client": 0,
                "bytes_from_client": 0, **counts}

    def connections(self, mailbox: str, protocol: Protocol = "imap") -> Connections:
        counts = self.mailbox_counts(mailbox, protocol)
        return Connections(counts["current"], counts["peak"], counts["total"])

    def commands(self, mailbox: str, protocol: Protocol = "imap") -> dict[str, int]:
        """Commands seen per verb (``UID FETCH`` counts as ``FETCH``), AUTHENTICATE included."""
        commands: dict[str, int] = self.mailbox_counts(mailbox, protocol)["commands"]
        return commands

    def storage_requests(self, service: Service | None = None) -> int:
        counts: dict[str, int] = self._call("GET", "/counters")["storage"]
        return counts.get(service, 0) if service else sum(counts.values())

    def wait_until_closed(self, mailbox: str, protocol: Protocol = "imap", timeout: float = 10.0) -> None:
        """Wait until the front has seen every connection of ``mailbox`` close."""
        deadline = time.monotonic() + timeout
        while self.connections(mailbox, protocol).current:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{mailbox} still has open {protocol} connections after {timeout:g}s")
            time.sleep(0.05)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - plain http to 127.0.0.1 only
            self.base_url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={KEY_HEADER: self._key, "Content-Type": "application/json"})
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            e.close()
            if e.code == 400:
                raise FaultError(json.loads(detail).get("error", detail)) from e
            raise RuntimeError(f"fault control API {method} {path}: HTTP {e.code} {detail}") from e
