"""The ports of the after-delivery phase: what it asks of a mail session (acting on messages,
listing folders) and where it keeps its rows. ``shared.ports.MailSession`` includes
``MailboxActions``; every method is used only with an AFTER_DELIVERY action or folder patterns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.delivery_actions import ActionState, KnownFolders
from shared.folder_patterns import ListedFolder
from shared.model import FolderState


class MailboxActions(Protocol):
    """Listing folders and acting on messages, in a logged-in IMAP session."""

    def capabilities(self) -> frozenset[str]:
        """What the server offers now, after login (upper case, e.g. MOVE, UIDPLUS)."""

    def list_folders(self) -> list[ListedFolder]:
        """Every folder of the mailbox (``LIST "" "*"``), names decoded from modified UTF-7."""

    def select_folder_writable(self, folder: str) -> FolderState:
        """Open a folder read-write (SELECT), to set flags or move messages out of it."""

    def search_uids_between(self, first_uid: int, last_uid: int, *, unseen: bool = False) -> list[int]:
        """UIDs from ``first_uid`` to ``last_uid`` in the folder (only unseen ones if asked)."""

    def folder_status(self, folder: str) -> FolderState:
        """UIDVALIDITY, UIDNEXT and message count of a folder, without opening it (STATUS)."""

    def create_folder(self, folder: str) -> None:
        """Create a folder; nothing when it exists already."""

    def uid_store_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        """Add flags (``\\Seen``, ``\\Deleted``) to these messages (UID STORE +FLAGS.SILENT)."""

    def uid_move(self, uids: Sequence[int], folder: str) -> None:
        """Move these messages to ``folder`` (UID MOVE); needs MOVE."""

    def uid_copy(self, uids: Sequence[int], folder: str) -> None:
        """Copy these messages to ``folder`` (UID COPY), all or none."""

    def uid_expunge(self, uids: Sequence[int]) -> None:
        """Remove those of these flagged ``\\Deleted`` (UID EXPUNGE, UIDPLUS), and no other."""


class ActionStateStore(Protocol):
    """Per folder how far the after-delivery phase acted; per mailbox the folders selected."""

    def get_action_state(self, mailbox: str, folder: str) -> ActionState | None: ...

    def put_action_state(self, state: ActionState) -> ActionState:
        """Write over ``state.etag`` (None: only if absent); CheckpointConflict otherwise."""
        ...

    def list_action_states(self) -> list[ActionState]: ...

    def get_known_folders(self, mailbox: str) -> KnownFolders | None: ...

    def put_known_folders(self, known: KnownFolders) -> None: ...


__all__ = ["ActionStateStore", "MailboxActions"]
