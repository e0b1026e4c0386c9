"""What opening an IMAP or a POP3 session has in common: connect within the time box, log
in, hand out the session, and say goodbye (or just close a connection that broke)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, Literal, TypeVar

from shared.adapters.mail_socket import Pace
from shared.adapters.tls import mail_tls_context
from shared.errors import MailferryError
from shared.model import Secret

Client = TypeVar("Client")
Session = TypeVar("Session")


class MailConnector(ABC, Generic[Client, Session]):
    """Opens XOAUTH2 sessions to one server; each protocol fills in its steps."""

    # The errors its library raises besides OSError.
    library_errors: tuple[type[Exception], ...] = ()

    def __init__(self, host: str, port: int, *, security: Literal["tls", "starttls"] = "tls",
                 ca_bundle: Path | None = None, timeout: float = 60.0) -> None:
        self.host = host
        self.port = port
        self.security = security
        # Per read, and for connecting (IMAP_TIMEOUT_SECONDS).
        self.timeout = timeout
        self._context = mail_tls_context(str(ca_bundle) if ca_bundle else None)

    @contextmanager
    def open(self, address: str, token: Secret, *,
             deadline: float | None = None) -> Iterator[Session]:
        """A logged-in session for ``address``, ended when the block ends. No read of it
        outlasts ``deadline`` (a ``time.monotonic()`` value)."""
        pace = Pace(self.timeout, deadline)
        client = self._connect(pace)
        try:
            self._login(client, address, token, pace)
            yield self._session(client, address, pace)
        finally:
            self._close(client, pace)

    @property
    def _errors(self) -> tuple[type[Exception], ...]:
        return (*self.library_errors, OSError)

    def _connect(self, pace: Pace) -> Client:
        try:
            return self._client(pace)
        except self._errors as e:
            raise self._failure(e, "connect", f"{self.host}:{self.port}") from e

    def _close(self, client: Client, pace: Pace) -> None:
        """Say goodbye on a healthy connection (briefly); just close a broken one."""
        if not pace.broken:
            try:
                pace.goodbye()
                self._goodbye(client)
                return
            except self._errors:
                pass
        self._drop(client)

    @abstractmethod
    def _client(self, pace: Pace) -> Client:
        """Connect (TLS or STARTTLS) and read the greeting."""

    @abstractmethod
    def _login(self, client: Client, address: str, token: Secret, pace: Pace) -> None: ...

    @abstractmethod
    def _session(self, client: Client, address: str, pace: Pace) -> Session: ...

    @abstractmethod
    def _goodbye(self, client: Client) -> None:
        """LOGOUT or QUIT."""

    @abstractmethod
    def _drop(self, client: Client) -> None:
        """Close the connection without a word."""

    @abstractmethod
    def _failure(self, error: BaseException, doing: str, server: str) -> MailferryError: ...
