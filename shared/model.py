"""The model: what a poll reads, writes and reports. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shared.delivery_actions import KEEP, Action
from shared.history_scope import ALL, FirstRunScope
from shared.setting_specs import from_setting


class Secret:
    """A value that prints as ``<SECRET>`` so it cannot leak through repr, logs or errors."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "<SECRET>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class PollOptions:
    """How one poll behaves: each field is read from the setting it names, with its default."""

    max_concurrent_mailboxes: int = from_setting("MAX_CONCURRENT_MAILBOXES")
    fetch_batch_size: int = from_setting("FETCH_BATCH_SIZE")
    upload_concurrency: int = from_setting("UPLOAD_CONCURRENCY")
    large_message_bytes: int = from_setting("LARGE_MESSAGE_BYTES")
    deadline_seconds: float = from_setting("POLL_DEADLINE_SECONDS")
    # The FIRST_RUN setting: for folders of mailboxes that do not set their own.
    first_run: FirstRunScope = ALL
    # AFTER_DELIVERY: what happens to a message once its blob is stored, unless MAILBOXES says.
    after_delivery: Action = KEEP


@dataclass(frozen=True)
class VaultSecret:
    """One secret version as Key Vault returned it."""

    name: str
    value: Secret
    content_type: str | None = None
    expires_on: datetime | None = None
    version: str | None = None


@dataclass(frozen=True)
class CredentialFacts:
    """What can be said about a credential without revealing it (for diagnostics)."""

    kind: str
    source: str
    expires_on: datetime | None = None
    thumbprint: str | None = None


@dataclass(frozen=True)
class FolderState:
    """What EXAMINE tells about a folder."""

    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True)
class FetchedMessage:
    """One message exactly as the server sent it for ``BODY.PEEK[]``."""

    uid: int
    raw: bytes
    internal_date: datetime | None = None


@dataclass(frozen=True)
class MessageInfo:
    """What FETCH (RFC822.SIZE INTERNALDATE) tells before the body is read.

    Exchange's RFC822.SIZE is an estimate: it decides how a message is fetched, never
    how many bytes are kept.
    """

    uid: int
    size: int
    internal_date: datetime | None = None


@dataclass(frozen=True)
class Checkpoint:
    """How far a folder has been delivered.

    ``dedup_through_uid``: after a UIDVALIDITY change, messages up to this UID may have
    been delivered under the old UIDVALIDITY and are checked against what is stored.
    ``etag`` is the store's version of the row; None for a row not yet written.
    ``first_run`` is the scope the folder's first poll took (``shared.history_scope``), and
    what it resolved to: a UID up to ``scope_through_uid`` is delivered only if the server
    received it at or after ``not_before``; None lets every message through.
    """

    mailbox: str
    folder: str
    uidvalidity: int
    last_uid: int = 0
    dedup_through_uid: int = 0
    etag: str | None = None
    first_run: str = "all"
    not_before: datetime | None = None
    scope_through_uid: int = 0


@dataclass(frozen=True)
class Pop3Checkpoint:
    """The POP3 messages of a mailbox already delivered, by digest of their UIDL.

    POP3 has no UIDs that only grow: the server lists every message each time, so the
    checkpoint is the set of delivered ones still in the maildrop (bounded by its size).
    """

    mailbox: str
    delivered: frozenset[bytes] = frozenset()
    etag: str | None = None
    # The scope the first poll took: all, or new (the maildrop of then marked delivered).
    first_run: str = "all"


@dataclass(frozen=True)
class Health:
    """How a mailbox has been doing, as kept in the health row."""

    mailbox: str
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    delivered_total: int = 0
    last_run_delivered: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    failing_since: datetime | None = None
    consecutive_failures: int = 0
    folder_errors: str | None = None
    # Folders the patterns selected before that the server no longer lists (not an error).
    folders_gone: str | None = None
    # Exchange asked for a pause (or back-off chose one): no poll of this mailbox before it.
    throttled_until: datetime | None = None
    # The first throttle since the last success, and how many polls were throttled since.
    throttled_since: datetime | None = None
    throttle_count: int = 0


@dataclass
class FolderResult:
    """What one poll did in one folder."""

    folder: str
    delivered: int = 0
    already_present: int = 0
    duplicates_skipped: int = 0
    bytes_delivered: int = 0
    # The server's internal date of the newest message this run delivered (for lag).
    newest_internal_date: datetime | None = None
    resynced: bool = False
    complete: bool = True
    # Another run advanced this folder's checkpoint first: it is delivering the folder.
    yielded: bool = False
    # The folder could not be opened (missing, refused name); the other folders went on.
    error: str | None = None
    # After delivery: messages acted on (AFTER_DELIVERY), and those left for a later run.
    acted: int = 0
    actions_pending: int = 0
    # A folder the patterns selected before that the server no longer lists, since when.
    gone_since: datetime | None = None


@dataclass
class MailboxResult:
    """What one poll did for one mailbox, or why it failed."""

    address: str
    folders: list[FolderResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None
    # Why this run did not poll the mailbox at all (not a failure), e.g. the time box.
    skipped: str | None = None
    # The server throttled the mailbox (``error`` says how): no poll of it before this time.
    # A delay, not a failure.
    throttled_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def failed(self) -> bool:
        """The poll failed; a throttled mailbox did not fail, it waits."""
        return self.error is not None and self.throttled_until is None

    @property
    def delivered(self) -> int:
        return sum(f.delivered for f in self.folders)

    @property
    def bytes_delivered(self) -> int:
        return sum(f.bytes_delivered for f in self.folders)

    @property
    def newest_internal_date(self) -> datetime | None:
        return max((f.newest_internal_date for f in self.folders if f.newest_internal_date),
                   default=None)

    @property
    def complete(self) -> bool:
        return self.ok and self.skipped is None and all(f.complete for f in self.folders)

    @property
    def folder_errors(self) -> list[FolderResult]:
        """Folders that could not be opened in a poll that otherwise went on."""
        return [f for f in self.folders if f.error is not None]

    @property
    def folders_gone(self) -> list[FolderResult]:
        """Folders selected by pattern before that the server no longer lists."""
        return [f for f in self.folders if f.gone_since is not None]

    @property
    def acted(self) -> int:
        return sum(f.acted for f in self.folders)


@dataclass
class PollReport:
    """What one poll did across every mailbox."""

    mailboxes: list[MailboxResult]
    seconds: float

    @property
    def delivered(self) -> int:
        return sum(m.delivered for m in self.mailboxes)

    @property
    def failed(self) -> list[MailboxResult]:
        return [m for m in self.mailboxes if m.failed]

    @property
    def throttled(self) -> list[MailboxResult]:
        return [m for m in self.mailboxes if m.throttled_until is not None]
