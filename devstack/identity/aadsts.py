"""Entra ID's refusals: an AADSTS code raised as an exception, answered as the JSON body
Entra sends (with trace and correlation IDs and a timestamp in the description)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from devstack.identity.endpoint import Reply


class EntraError(Exception):
    """A request Entra refuses, with its HTTP status, OAuth ``error`` and AADSTS code."""

    def __init__(self, status: int, error: str, code: int, message: str) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        self.status = status
        self.error = error
        self.code = code
        self.message = message

    def reply(self, base_url: str) -> Reply:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        description = (
            f"AADSTS{self.code}: {self.message} Trace ID: {trace_id} Correlation ID: "
            f"{correlation_id} Timestamp: {stamp}"
        )
        return Reply(self.status, {
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{base_url}/error?code={self.code}",
        })


def malformed_assertion(detail: str = "") -> EntraError:
    """AADSTS50027: the client assertion cannot be read."""
    return EntraError(400, "invalid_request", 50027,
                      f"JWT token is invalid or malformed{detail}.")


def invalid_client(code: int, message: str) -> EntraError:
    """A 401 ``invalid_client``: the client's credential is refused."""
    return EntraError(401, "invalid_client", code, message)
