"""`mailferry status` tells, from Table storage alone, what each folder still has to act on."""

from __future__ import annotations

from shared.action_status import pending_actions
from shared.delivery_actions import KEEP, Action, ActionState
from shared.model import Checkpoint
from shared.settings import MailboxConfig

A = "ops@contoso.com"
MOVE = Action("move", "Archive")


def test_pending_is_what_was_delivered_since_the_last_actions():
    mailbox = MailboxConfig(A, ("INBOX", "*"), folder_actions=(("INBOX", MOVE),))
    checkpoints = [Checkpoint(A, "INBOX", 7, last_uid=120), Checkpoint(A, "Sent Items", 7, last_uid=5),
                   Checkpoint(A, "Gone", 7, last_uid=5), Checkpoint("old@contoso.com", "INBOX", 1, 9)]
    states = [ActionState(A, "INBOX", 7, acted_through_uid=100, without_blob=2)]
    rows = {r.folder: r for r in pending_actions([mailbox], Action("seen"), checkpoints, states)}
    assert set(rows) == {"INBOX", "Sent Items", "Gone"}
    assert rows["INBOX"].action == MOVE and rows["INBOX"].acted_through_uid == 100
    assert rows["INBOX"].pending == "up to 20 (UIDs 101-120); 2 left in place without a blob"
    assert rows["Sent Items"].pending == "up to 5 (UIDs 1-5)" and rows["Sent Items"].action == Action("seen")


def test_keep_folders_are_left_out_and_a_renumbered_folder_waits_whole():
    mailbox = MailboxConfig(A, ("INBOX", "Invoices"), folder_actions=(("Invoices", Action("delete")),))
    checkpoints = [Checkpoint(A, "INBOX", 7, last_uid=3), Checkpoint(A, "Invoices", 8, last_uid=4)]
    states = [ActionState(A, "Invoices", 7, acted_through_uid=4)]
    [row] = pending_actions([mailbox], KEEP, checkpoints, states)
    assert row.folder == "Invoices" and row.pending == "up to 4 (UIDs 1-4)"
    done = [ActionState(A, "Invoices", 8, acted_through_uid=4)]
    assert pending_actions([mailbox], KEEP, checkpoints, done)[0].pending == "none"
