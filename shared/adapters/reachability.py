"""Whether a mail server can be reached at all: TCP, then a TLS handshake, for diagnostics.

The poll never needs these alone (``ImapServer`` and ``Pop3MailServer`` connect and secure in
one step); the doctor runs them apart to say which step fails.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from shared.adapters.mail_failures import connect_failure_kind
from shared.errors import MailServerError


class ConnectionProbe:
    """Checks one server's TCP port, and its TLS certificate against the trusted CAs.

    ``implicit_tls``: the port speaks TLS from the start (993, 995), so ``tls`` applies.
    """

    def __init__(self, host: str, port: int, *, implicit_tls: bool, ca_bundle: Path | None,
                 timeout: float) -> None:
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self._ca_bundle = ca_bundle
        self._timeout = timeout

    def tcp(self) -> None:
        """Connect and close; raises MailServerError with the kind of the failure."""
        try:
            with socket.create_connection((self.host, self.port), timeout=self._timeout):
                pass
        except OSError as e:
            raise MailServerError(f"{type(e).__name__}: {e}", kind=connect_failure_kind(e)) from e

    def tls(self) -> str:
        """Complete a TLS handshake (implicit TLS); the protocol version and what was trusted."""
        try:
            context = ssl.create_default_context(
                cafile=str(self._ca_bundle) if self._ca_bundle else None)
            with socket.create_connection((self.host, self.port), timeout=self._timeout) as raw, \
                    context.wrap_socket(raw, server_hostname=self.host) as tls:
                return f"{tls.version()}, certificate for {self.host} trusted"
        except OSError as e:  # ssl.SSLError included
            raise MailServerError(f"{type(e).__name__}: {e}",
                                  kind=connect_failure_kind(e, handshake=True)) from e
