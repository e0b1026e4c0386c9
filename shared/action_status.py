"""``mailferry status``: the after-delivery actions still pending, per folder.

Read from Table storage alone (the checkpoints and the action rows, one query each), with no
login to any mailbox: the pending count is the UIDs delivered since the last action phase
(``last_uid - acted_through_uid``), an upper bound, since UIDs have gaps where mail was
removed. The exact number would take a login and a SEARCH per folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.markup import escape
from rich.table import Table

from shared.delivery_actions import Action, ActionState
from shared.folder_patterns import matching_entry
from shared.mailbox_list import MailboxConfig
from shared.model import Checkpoint


@dataclass(frozen=True)
class PendingActions:
    """One folder's after-delivery action and what is left of it."""

    mailbox: str
    folder: str
    action: Action
    acted_through_uid: int
    last_uid: int
    pending: str


def pending_actions(mailboxes: Sequence[MailboxConfig], default: Action,
                    checkpoints: Sequence[Checkpoint], states: Sequence[ActionState]) -> list[PendingActions]:
    """One row per checkpointed IMAP folder with an action other than keep (or one acted on before)."""
    configured = {m.address.lower(): m for m in mailboxes}
    acted = {(s.mailbox.lower(), s.folder): s for s in states}
    rows = []
    for checkpoint in sorted(checkpoints, key=lambda c: (c.mailbox.lower(), c.folder)):
        mailbox = configured.get(checkpoint.mailbox.lower())
        entry = matching_entry(checkpoint.folder, mailbox.folders) if mailbox else None
        if mailbox is None or entry is None:
            continue  # not polled any more
        action = mailbox.action_for(entry, default)
        state = acted.get((checkpoint.mailbox.lower(), checkpoint.folder))
        if state is not None and state.uidvalidity != checkpoint.uidvalidity:
            state = None  # the folder was renumbered: everything at or below the checkpoint waits
        if action.is_keep and state is None:
            continue
        through = state.acted_through_uid if state else 0
        rows.append(PendingActions(checkpoint.mailbox, checkpoint.folder, action, through,
                                   checkpoint.last_uid, _pending(action, state, through, checkpoint)))
    return rows


def _pending(action: Action, state: ActionState | None, through: int, checkpoint: Checkpoint) -> str:
    if action.is_keep:
        return "none (keep)"
    waiting = max(0, checkpoint.last_uid - through)
    text = f"up to {waiting} (UIDs {through + 1}-{checkpoint.last_uid})" if waiting else "none"
    if state is not None and state.without_blob:
        text += f"; {state.without_blob} left in place without a blob"
    if state is not None and state.copy_uids:
        text += f"; an interrupted move of {len(state.copy_uids)} is finished by the next run"
    return text


def pending_actions_table(rows: Sequence[PendingActions]) -> Table:
    """The rows as the status command prints them."""
    table = Table(title="After delivery")
    for column in ("Mailbox", "Folder", "Action", "Acted through UID", "Pending"):
        table.add_column(column)
    for row in rows:
        table.add_row(escape(row.mailbox), escape(row.folder), escape(str(row.action)),
                      f"{row.acted_through_uid} of {row.last_uid}", escape(row.pending))
    return table
