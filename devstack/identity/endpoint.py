"""What every route of the emulator takes and gives: a parsed request, a JSON reply, and
the parts of the emulator the routes share."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs

from devstack.identity.state import EmulatorState
from devstack.identity.tokens import SigningKey


def first_values(encoded: str) -> dict[str, str]:
    """A query string or form body as a dict, keeping the first value of each field."""
    return {name: values[0] for name, values in parse_qs(encoded).items()}


@dataclass(frozen=True)
class Request:
    """One HTTP request, its body already read."""

    method: str
    path: str  # without the query, still percent-encoded
    query: dict[str, str]
    headers: Message[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        """The body as an ``application/x-www-form-urlencoded`` form."""
        return first_values(self.body.decode(errors="replace"))

    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header, if there is one."""
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


@dataclass(frozen=True)
class Reply:
    """A JSON reply; a ``body`` of None sends an empty one."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Emulator:
    """The state, signing key and address every route works with."""

    state: EmulatorState
    key: SigningKey
    base_url: str

    @property
    def tenant(self) -> str:
        return self.state.config.tenant_id
