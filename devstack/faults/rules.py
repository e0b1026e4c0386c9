"""What a scripted fault is: its kind, whom it hits, and how often or how long it lasts.

Every fault ends by itself: after ``times`` uses, after ``seconds``, or both (whichever
comes first). A use is one answered command (``answer``), one connection hit (``bye``,
``reset``, ``stall``, ``trickle``), one session (``size_factor``, ``hide_move``), one refused
login (``max_connections``) or one request (storage kinds); an ``outage`` lasts ``seconds``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAIL_PROTOCOLS = ("imap", "pop3")
STORAGE = "storage"
SERVICES = ("blob", "queue", "table")
MAIL_KINDS = ("answer", "bye", "reset", "stall", "trickle", "size_factor", "max_connections",
              "hide_move")
STORAGE_KINDS = ("busy", "error", "reset", "stall", "outage")
# Kinds that act at a byte offset of a connection's traffic.
BYTE_KINDS = ("bye", "reset", "stall", "trickle")
ANY_MAILBOX = "*"
ANY_COMMAND = "ANY"
# No single effect (a stall, a trickle, an outage) may last longer than this.
MAX_EFFECT_SECONDS = 900.0


class FaultError(ValueError):
    """A fault the fronts cannot carry out; the message names the field to fix."""


@dataclass
class Fault:
    """One scripted fault. Fields a kind does not use keep their defaults."""

    kind: str
    protocol: str = "imap"
    mailbox: str = ANY_MAILBOX
    on: tuple[str, ...] = ()
    times: int | None = 1
    seconds: float | None = None
    # answer: "<tag> NO|BAD <text>" or "* BYE <text>" (IMAP), "-ERR <text>" (POP3); then
    # with `bye` a "* BYE <bye_text>" (IMAP) and the connection closes
    status: str = "NO"
    text: str = ""
    bye: bool = False
    bye_text: str = "Connection closed. 14"
    # bye: after this many commands once logged in, or at a byte offset
    after_commands: int | None = None
    at_byte: int | None = None
    direction: str = "server"
    in_literal: bool = False
    # stall / trickle / storage stall: how long; trickle: one byte every `interval` seconds
    duration: float = 0.0
    interval: float = 1.0
    then: str = "continue"
    factor: float = 1.0
    limit: int = 0
    # storage filters; `when`: before the request reaches Azurite or after it answered
    service: str | None = None
    method: str | None = None
    path_prefix: str | None = None
    when: str = "before"
    # set by the fronts
    id: int = 0
    used: int = 0
    expires_at: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """A validated fault from its JSON form; :class:`FaultError` names a bad field."""
        names = {f.name for f in dataclasses.fields(cls)} - {"id", "used", "expires_at"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise FaultError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        if "kind" not in data:
            raise FaultError("field 'kind' is required")
        values = dict(data)
        on = values.get("on", ())
        if isinstance(on, str):
            on = (on,)
        values["on"] = tuple(str(v).upper() for v in on)
        if "mailbox" in values:
            values["mailbox"] = str(values["mailbox"]).lower()
        if values.get("method") is not None:
            values["method"] = str(values["method"]).upper()
        try:
            fault = cls(**values)
        except TypeError as e:
            raise FaultError(f"bad fault: {e}") from e
        fault.validate()
        return fault

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["on"] = list(self.on)
        return data

    def validate(self) -> None:
        """Raise :class:`FaultError` unless this fault is complete and time-boxed."""
        _check_lifetime(self)
        if self.protocol in MAIL_PROTOCOLS:
            _check_mail(self)
        elif self.protocol == STORAGE:
            _check_storage(self)
        else:
            raise FaultError(f"protocol must be one of {(*MAIL_PROTOCOLS, STORAGE)}, not {self.protocol!r}")

    # -- matching -------------------------------------------------------------------
    def hits_mailbox(self, mailbox: str | None) -> bool:
        return self.mailbox == ANY_MAILBOX or (mailbox is not None and mailbox.lower() == self.mailbox)

    def hits_command(self, verb: str) -> bool:
        return not self.on or ANY_COMMAND in self.on or verb.upper() in self.on

    def hits_request(self, service: str, method: str, path: str) -> bool:
        return ((self.service is None or self.service == service)
                and (self.method is None or self.method == method.upper())
                and (self.path_prefix is None or path.startswith(self.path_prefix)))


def _check_lifetime(fault: Fault) -> None:
    if fault.times is None and fault.seconds is None and fault.kind != "outage":
        raise FaultError("give 'times' or 'seconds' (or both): every fault must end by itself")
    if fault.times is not None and fault.times < 1:
        raise FaultError(f"'times' must be 1 or more, not {fault.times}")
    if fault.seconds is not None and not 0 < fault.seconds <= MAX_EFFECT_SECONDS * 4:
        raise FaultError(f"'seconds' must be in (0, {MAX_EFFECT_SECONDS * 4:g}], not {fault.seconds}")
    if not 0 <= fault.duration <= MAX_EFFECT_SECONDS:
        raise FaultError(f"'duration' must be in [0, {MAX_EFFECT_SECONDS:g}], not {fault.duration}")
    if fault.then not in ("continue", "close"):
        raise FaultError(f"'then' must be 'continue' or 'close', not {fault.then!r}")


def _check_mail(fault: Fault) -> None:
    kind = fault.kind
    if kind not in MAIL_KINDS:
        raise FaultError(f"kind {kind!r} is not a mail fault; mail kinds: {', '.join(MAIL_KINDS)}")
    statuses = ("NO", "BAD", "BYE") if fault.protocol == "imap" else ("-ERR",)
    if kind == "answer" and (not fault.text or fault.status not in statuses):
        raise FaultError(f"a {fault.protocol} answer needs 'text' and a 'status' in {statuses}")
    if kind == "bye" and (fault.after_commands is None) == (fault.at_byte is None):
        raise FaultError("a bye needs exactly one of 'after_commands' and 'at_byte'")
    if kind == "bye" and fault.after_commands is not None and fault.after_commands < 0:
        raise FaultError("'after_commands' must be 0 or more")
    if kind in ("reset", "stall", "trickle") and fault.at_byte is None:
        fault.at_byte = 0
    if fault.at_byte is not None and fault.at_byte < 0:
        raise FaultError("'at_byte' must be 0 or more")
    if fault.direction not in ("server", "client"):
        raise FaultError("'direction' is 'server' (bytes to the client) or 'client' (bytes from it)")
    if fault.direction == "client" and kind != "reset":
        raise FaultError("only a reset can act on the client's bytes (direction='client')")
    if kind == "stall" and fault.duration <= 0:
        raise FaultError("a stall needs a 'duration' in seconds")
    if kind == "trickle" and (fault.duration <= 0 or not 0 < fault.interval <= 60):
        raise FaultError("a trickle needs a 'duration' and an 'interval' in (0, 60] seconds")
    if kind == "size_factor" and not 0 <= fault.factor <= 1000:
        raise FaultError("'factor' must be in [0, 1000]")
    if kind == "max_connections" and fault.limit < 1:
        raise FaultError("'limit' must be 1 or more")


def _check_storage(fault: Fault) -> None:
    kind = fault.kind
    if kind not in STORAGE_KINDS:
        raise FaultError(f"kind {kind!r} is not a storage fault; storage kinds: {', '.join(STORAGE_KINDS)}")
    if fault.service is not None and fault.service not in SERVICES:
        raise FaultError(f"'service' must be one of {SERVICES} or null, not {fault.service!r}")
    if fault.when not in ("before", "after"):
        raise FaultError("'when' is 'before' (Azurite never sees the request) or 'after' (it did)")
    if kind == "stall" and fault.duration <= 0:
        raise FaultError("a storage stall needs a 'duration' in seconds")
    if kind == "outage":
        if fault.seconds is None or fault.seconds > MAX_EFFECT_SECONDS:
            raise FaultError(f"an outage needs 'seconds' in (0, {MAX_EFFECT_SECONDS:g}]")
        fault.times = None
