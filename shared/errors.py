"""The errors mailferry raises, each saying what to do about it.

    MailferryError              every error carries a ``kind`` (FailureKind)
    ├── ConfigurationError      a setting is missing or malformed (nothing ran)
    ├── CredentialError         the app's credential could not be had (Key Vault, certificate,
    │                           managed identity)
    ├── AuthenticationError     Entra ID refused a token, or the mail server refused it
    │     └── MailboxAccessError   the token is good but this mailbox is not granted
    ├── MailServerError         the mail server failed, timed out, dropped or was unreachable
    │     ├── MailboxThrottled     the server is throttling this mailbox; may say for how long
    │     ├── FolderUnavailable    the server would not open one folder (the others go on)
    │     └── ActionUnavailable    the AFTER_DELIVERY action cannot be done in one folder
    └── StorageError            Blob, Table or Queue storage failed
          └── CheckpointConflict   another run advanced the checkpoint first

The type says who failed; ``kind`` says what went wrong, and picks the advice
(``shared.diagnoses``). Messages never carry a secret or a token: adapters build them from
codes and server text, never from request bodies.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum, auto


class FailureKind(StrEnum):
    """What went wrong, independent of how a library or server worded it (value: the name in
    lower case, as JSON and health rows show it)."""

    SETTING = auto()
    # The app's credential: Key Vault, the certificate in it, the managed identity.
    SECRET_MISSING = auto()
    VAULT_DENIED = auto()
    VAULT_UNREACHABLE = auto()
    CERTIFICATE_FORMAT = auto()
    NO_IDENTITY = auto()
    CREDENTIAL_EXPIRED = auto()
    CREDENTIAL_EXPIRING = auto()
    # Entra ID's answers (AADSTS codes) and the token it gave.
    SECRET_INVALID = auto()
    SECRET_EXPIRED = auto()
    APP_NOT_FOUND = auto()
    APP_DISABLED = auto()
    TENANT_NOT_FOUND = auto()
    TENANT_MALFORMED = auto()
    INVALID_SCOPE = auto()
    CERTIFICATE_NOT_REGISTERED = auto()
    CLOCK_SKEW = auto()
    NO_FEDERATED_CREDENTIAL = auto()
    TOKEN_REFUSED = auto()
    ENTRA_UNREACHABLE = auto()
    TOKEN_AUDIENCE = auto()
    TOKEN_ROLE = auto()
    TOKEN_TENANT = auto()
    # The mail server (IMAP and POP3).
    CONNECT_FAILED = auto()
    CONNECT_TIMEOUT = auto()
    TLS_UNTRUSTED = auto()
    TLS_PROTOCOL = auto()
    NO_XOAUTH2 = auto()
    AUTH_REFUSED = auto()
    NOT_CONNECTED = auto()
    THROTTLED = auto()
    CONNECTION_DROPPED = auto()
    FOLDER_MISSING = auto()
    SERVER_ERROR = auto()
    # Storage.
    STORAGE_DENIED = auto()
    STORAGE_UNREACHABLE = auto()
    STORAGE_FAILED = auto()
    CHECKPOINT_CONFLICT = auto()
    OTHER = auto()


class MailferryError(Exception):
    """Base of every error mailferry raises on purpose; ``kind`` says what went wrong."""

    default_kind = FailureKind.OTHER

    def __init__(self, message: str, *, kind: FailureKind | None = None) -> None:
        self.kind = kind if kind is not None else self.default_kind
        super().__init__(message)


class ConfigurationError(MailferryError):
    """One or more settings are missing or malformed; ``problems`` lists each."""

    default_kind = FailureKind.SETTING

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} setting(s) need fixing before mailferry can run:\n{lines}"
        )


class CredentialError(MailferryError):
    """The app's credential could not be had: Key Vault, its certificate or the managed identity."""

    default_kind = FailureKind.VAULT_DENIED


class AuthenticationError(MailferryError):
    """A token was refused, by Entra ID or by the mail server.

    ``code`` is the AADSTS code (e.g. ``AADSTS7000215``) when Entra ID gave one.
    """

    default_kind = FailureKind.TOKEN_REFUSED

    def __init__(self, message: str, *, kind: FailureKind | None = None, code: str | None = None) -> None:
        self.code = code
        super().__init__(message, kind=kind)


class MailboxAccessError(AuthenticationError):
    """The server accepted the app but would not open this mailbox for it."""

    default_kind = FailureKind.NOT_CONNECTED


class MailServerError(MailferryError):
    """The IMAP or POP3 server failed, timed out, dropped the connection or was unreachable."""

    default_kind = FailureKind.SERVER_ERROR


class MailboxThrottled(MailServerError):
    """The server is throttling this mailbox (Exchange: ``Request is throttled``).

    ``retry_after_seconds`` is the server's ``Suggested Backoff Time`` when it gave one;
    ``answered_at`` when the answer came, once the poll noted it (the wait counts from then).
    """

    default_kind = FailureKind.THROTTLED

    def __init__(self, message: str, *, retry_after_seconds: float | None) -> None:
        self.retry_after_seconds = retry_after_seconds
        self.answered_at: datetime | None = None
        super().__init__(message)


class FolderUnavailable(MailServerError):
    """The server refused to open one folder (missing, or a name it rejects)."""

    default_kind = FailureKind.FOLDER_MISSING


class ActionUnavailable(MailServerError):
    """The server will not carry out the after-delivery action in one folder (a refused
    STORE, MOVE or CREATE, or no UIDPLUS); the folder's mail is still delivered."""


class StorageError(MailferryError):
    """Blob, Table or Queue storage failed."""

    default_kind = FailureKind.STORAGE_FAILED


class CheckpointConflict(StorageError):
    """Another run advanced this folder's checkpoint first; this run yields."""

    default_kind = FailureKind.CHECKPOINT_CONFLICT
