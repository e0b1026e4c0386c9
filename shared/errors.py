"""The errors mailferry raises, each saying what to do about it.

    MailferryError
    ├── ConfigurationError      a setting is missing or malformed (nothing ran)
    ├── CredentialError         Key Vault could not give us the app's credential
    ├── AuthenticationError     Entra ID refused a token, or the mail server refused it
    │     └── MailboxAccessError   the token is good but this mailbox is not granted
    ├── MailServerError         the mail server failed, timed out or was unreachable
    │     └── FolderUnavailable    the server would not open one folder (the others go on)
    ├── StorageError            Blob or Table storage failed
    │     └── CheckpointConflict   another run advanced the checkpoint first
    └── DeadlineReached         the run's time box is spent; the next run resumes

Messages never carry a secret or a token: adapters build them from codes and
server text, never from request bodies.
"""

from __future__ import annotations


class MailferryError(Exception):
    """Base of every error mailferry raises on purpose."""


class ConfigurationError(MailferryError):
    """One or more settings are missing or malformed; ``problems`` lists each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} setting(s) need fixing before mailferry can run:\n{lines}"
        )


class CredentialError(MailferryError):
    """The app's client secret could not be read from Key Vault."""


class AuthenticationError(MailferryError):
    """A token was refused, by Entra ID or by the mail server.

    ``code`` is the AADSTS code (e.g. ``AADSTS7000215``) when Entra ID gave one.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class MailboxAccessError(AuthenticationError):
    """The server accepted the app but would not open this mailbox for it."""


class MailServerError(MailferryError):
    """The IMAP server failed, timed out or could not be reached."""


class FolderUnavailable(MailServerError):
    """The server refused to open one folder (missing, or a name it rejects)."""


class StorageError(MailferryError):
    """Blob or Table storage failed."""


class CheckpointConflict(StorageError):
    """Another run advanced this folder's checkpoint first; this run yields."""


class DeadlineReached(MailferryError):
    """The run's time box is spent; what was delivered is checkpointed."""
