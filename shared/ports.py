"""The ports the poll core talks through. Adapters implement them; tests use in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any, Protocol

from shared.action_ports import MailboxActions
from shared.mailbox_list import MailboxConfig
from shared.model import (
    Checkpoint,
    CredentialFacts,
    FetchedMessage,
    FolderState,
    Health,
    MailboxResult,
    MessageInfo,
    Pop3Checkpoint,
    Secret,
    VaultSecret,
)

ThreadStart = Callable[[], None]
"""Runs first in every thread a poll starts: on Functions it carries the invocation into
the thread, so the host keeps the thread's log records (it drops records it cannot
attribute to an invocation)."""


def no_thread_setup() -> None:
    """The ThreadStart of runs outside Functions: nothing to carry."""


class MailboxDirectory(Protocol):
    """The mailboxes to poll: the MAILBOXES setting, or the registry in Table storage."""

    def list_mailboxes(self) -> list[MailboxConfig]: ...

    def get_mailbox(self, address: str) -> MailboxConfig | None:
        """The mailbox of this address (in any case), or None when it is not listed."""
        ...


class ListedMailboxes:
    """A MailboxDirectory over a fixed list (the MAILBOXES setting)."""

    def __init__(self, mailboxes: Sequence[MailboxConfig]) -> None:
        self._mailboxes = list(mailboxes)
        self._by_address = {m.address.lower(): m for m in self._mailboxes}

    def list_mailboxes(self) -> list[MailboxConfig]:
        return list(self._mailboxes)

    def get_mailbox(self, address: str) -> MailboxConfig | None:
        return self._by_address.get(address.strip().lower())


class SecretReader(Protocol):
    """Reads one secret of the vault holding the app's credential."""

    @property
    def vault_url(self) -> str: ...

    def read(self, name: str, *, setting: str = "CLIENT_SECRET_NAME") -> VaultSecret:
        """The secret's current version; ``setting`` names the setting that chose it."""
        ...


class ClientCredential(Protocol):
    """Gives MSAL its ``client_credential``; ``refresh`` re-reads it after a rotation."""

    def get(self) -> str | dict[str, Any]: ...

    def refresh(self) -> bool:
        """Re-read the credential; False when there is nothing to re-read."""
        ...

    def facts(self) -> CredentialFacts: ...


class TokenSource(Protocol):
    """Gives an app-only access token for the mail server (cached while valid)."""

    def get_token(self) -> Secret: ...


class MailSession(MailboxActions, Protocol):
    """An authenticated connection to one mailbox (what the after-delivery phase does with it:
    ``MailboxActions``)."""

    def select_folder(self, folder: str) -> FolderState:
        """Open a folder read-only (EXAMINE)."""
        ...

    def search_uids_from(self, first_uid: int) -> list[int]:
        """UIDs the server lists for ``first_uid:*`` (it may include one below ``first_uid``)."""
        ...

    def fetch(self, uids: Sequence[int]) -> Iterable[FetchedMessage]:
        """The messages with these UIDs, byte for byte, each as it arrives; expunged ones are
        simply absent. Those handed out before a failure are complete."""
        ...

    def fetch_info(self, uids: Sequence[int]) -> list[MessageInfo]:
        """Size and internal date of these messages, without their bodies."""
        ...

    def fetch_pieces(self, uid: int, piece: int) -> Generator[bytes, None, None] | None:
        """The message byte for byte in pieces of ``piece`` bytes (the last shorter), as they
        arrive from one FETCH; None when the server sends no body for it (it is gone). Close
        the pieces when done: pieces left unread are read and dropped at closing."""
        ...

    def search_uids_since(self, day: date) -> list[int]:
        """UIDs of the messages received on or after ``day`` (``UID SEARCH SINCE``): by internal
        date but to the day, as the server reads that date's time zone."""
        ...


class MailServer(Protocol):
    """Opens sessions to mailboxes on one server."""

    def open(self, address: str, token: Secret, *,
             deadline: float | None = None) -> AbstractContextManager[MailSession]:
        """A logged-in session; no read of it outlasts ``deadline`` (a ``time.monotonic()``)."""
        ...


class MessageSink(Protocol):
    """Where delivered messages go."""

    def create(self, name: str, raw: bytes, metadata: Mapping[str, str]) -> bool:
        """Write a new blob; False when one of that name exists already (delivered before)."""
        ...

    def create_from_chunks(self, name: str, chunks: Iterable[bytes],
                           metadata: Callable[[], Mapping[str, str]], *,
                           on_thread_start: ThreadStart = no_thread_setup) -> bool:
        """Write a new blob piece by piece, committed only when every piece is stored;
        ``metadata`` is asked for after the last piece. False when the blob exists. Threads
        it starts run ``on_thread_start`` first."""
        ...

    def exists(self, name: str) -> bool: ...

    def list_dedup_keys(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(name, dedup key) of every message stored under ``prefix``."""
        ...


class CheckpointStore(Protocol):
    """Per-folder checkpoints, advanced with optimistic concurrency."""

    def get_checkpoint(self, mailbox: str, folder: str) -> Checkpoint | None: ...

    def put_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Write if the stored row still has ``checkpoint.etag`` (None: only if absent).

        Returns the checkpoint with its new etag; raises CheckpointConflict otherwise.
        """
        ...

    def list_checkpoints(self) -> list[Checkpoint]: ...


class HealthReader(Protocol):
    """Reads one mailbox's health row (one point read)."""

    def get_health(self, mailbox: str) -> Health | None:
        """The mailbox's health, or None when it has no row yet."""
        ...


class HealthStore(HealthReader, Protocol):
    """Per-mailbox health rows."""

    def record_result(self, result: MailboxResult, *, at: datetime) -> Health:
        """Add one run's outcome to the mailbox's health; the health as it now stands."""
        ...

    def list_health(self) -> list[Health]: ...


class Clock(Protocol):
    """Time, so tests can move it."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class PollObserver(Protocol):
    """Hears about progress, e.g. to draw a live display."""

    def mailbox_started(self, address: str) -> None: ...

    def message_delivered(self, address: str, size: int) -> None: ...

    def mailbox_finished(self, result: MailboxResult) -> None: ...


class PollQueue(Protocol):
    """The fan-out queue, as the timer uses it."""

    def send(self, text: str) -> None:
        """Add one message (creating the queue if it is missing)."""
        ...


class NoticeQueue(Protocol):
    """Where a notice of each delivered message goes (NOTIFY_QUEUE)."""

    def send(self, text: str) -> None:
        """Add one message; raises StorageError when it could not be added."""
        ...


class DeliveredBlobs(Protocol):
    """Reads back delivered messages, and writes the summary documents beside them."""

    def get_size_and_metadata(self, name: str) -> tuple[int, dict[str, str]]: ...

    def read(self, name: str, *, length: int | None = None) -> Iterator[bytes]:
        """The blob's bytes in pieces, from the start; ``length`` bytes at most."""
        ...

    def create_json(self, name: str, text: str) -> bool:
        """Write a new JSON blob; False when one of that name exists already."""
        ...


class Lease(Protocol):
    """A held lease on one mailbox."""

    def renew(self) -> None:
        """Extend the lease by its duration; raises StorageError when it was lost."""
        ...

    def release(self) -> None:
        """Give the lease back at once."""
        ...


class LeaseStore(Protocol):
    """One lease per mailbox, expiring unless renewed."""

    @property
    def duration_seconds(self) -> float: ...

    def acquire(self, mailbox: str) -> Lease | None:
        """The mailbox's lease, or None while someone else holds it."""
        ...


class QueueHealth(HealthReader, Protocol):
    """The part of the health row the fan-out reads and writes."""

    def record_queue_given_up(self, mailbox: str, *, attempts: int, at: datetime) -> None: ...


class Pop3Session(Protocol):
    """An authenticated POP3 connection to one mailbox's Inbox."""

    def list_uidls(self) -> list[tuple[int, str]]:
        """(message number, unique id) of every message in the maildrop (UIDL)."""
        ...

    def retrieve(self, number: int) -> bytes:
        """The message, byte for byte as the server sent it (RETR, dot-unstuffed)."""
        ...

    def retrieve_pieces(self, number: int) -> Generator[bytes, None, None]:
        """``retrieve`` in pieces as they arrive, so a large message is never whole in memory;
        closed before its end, the session cannot be used again."""
        ...

    def dele(self, number: int) -> None:
        """Mark a message deleted (DELE): removed at QUIT, so a session that dies keeps it."""
        ...


class Pop3Server(Protocol):
    """Opens XOAUTH2 sessions to mailboxes over POP3."""

    def open(self, address: str, token: Secret, *,
             deadline: float | None = None) -> AbstractContextManager[Pop3Session]:
        """A logged-in session; no read of it outlasts ``deadline`` (a ``time.monotonic()``)."""
        ...


class Pop3CheckpointStore(Protocol):
    """Which POP3 messages a mailbox has delivered, advanced with optimistic concurrency."""

    def get_pop3_checkpoint(self, mailbox: str) -> Pop3Checkpoint | None: ...

    def put_pop3_checkpoint(self, checkpoint: Pop3Checkpoint) -> Pop3Checkpoint:
        """Write if the stored row still has ``checkpoint.etag`` (None: only if absent)."""
        ...
