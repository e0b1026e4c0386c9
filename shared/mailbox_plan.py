"""What one run does in a mailbox: which folders (patterns resolved with one LIST), the
after-delivery action of each, the server's capabilities, and the folders gone since.

A mailbox with folder names only and ``keep`` everywhere costs nothing here: no LIST, no
CAPABILITY. Move targets are created when missing and are never polled themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.delivery_actions import Action, KnownFolders
from shared.errors import ActionUnavailable, MailferryError
from shared.folder_patterns import parse_entry, resolve_folders, uses_patterns
from shared.mailbox_list import MailboxConfig
from shared.model import FolderResult
from shared.ports import ActionStateStore, MailSession

log = logging.getLogger("mailferry.poll")

# A folder gone from the server is noted in the health row for this long, then forgotten.
GONE_NOTE_DAYS = 30


@dataclass
class MailboxPlan:
    """The folders to poll in order, each with its action, and what to note in the health row."""

    folders: list[tuple[str, Action]]
    capabilities: frozenset[str] = frozenset()
    notes: list[FolderResult] = field(default_factory=list)


def plan_mailbox(session: MailSession, mailbox: MailboxConfig, *, default: Action,
                 states: ActionStateStore | None, now: datetime) -> MailboxPlan:
    """The run's plan for ``mailbox``: at most one CAPABILITY and one LIST."""
    entries = mailbox.folders
    actions = {entry: mailbox.action_for(entry, default) for entry in entries}
    acting = any(not a.is_keep for a in actions.values())
    capabilities = session.capabilities() if acting else frozenset()
    targets = sorted({a.target for a in actions.values() if a.kind == "move" and a.target})
    patterns = uses_patterns(entries)
    if not patterns and not targets:
        return MailboxPlan([(entry, actions[entry]) for entry in entries], capabilities)
    listed = session.list_folders()
    resolution = resolve_folders(entries, listed, never=targets)
    plan = MailboxPlan([(name, actions[entry]) for name, entry in resolution.folders], capabilities,
                       [FolderResult(entry, error=why) for entry, why in resolution.problems])
    for entry in entries:
        if parse_entry(entry).kind == "name" and entry in targets:
            plan.notes.append(FolderResult(entry, error=f"not polled: {entry} is where "
                                           "AFTER_DELIVERY moves delivered mail"))
    names = {f.name for f in listed}
    for target in targets:
        if target not in names:
            try:
                session.create_folder(target)
                log.info("%s: created the move target %s", mailbox.address, target)
            except ActionUnavailable as e:
                plan.notes.append(FolderResult(target, error=f"cannot create the move target: {e}"))
    if patterns and states is not None:
        plan.notes += _gone(states, mailbox.address, [n for n, _ in plan.folders], names, now)
    return plan


def _gone(states: ActionStateStore, address: str, selected: list[str], listed: set[str],
          now: datetime) -> list[FolderResult]:
    """Folders selected before that the server no longer lists (noted, not an error)."""
    try:
        known = states.get_known_folders(address) or KnownFolders(address)
        gone = dict(known.gone)
        for name in known.folders:
            if name not in listed:
                gone.setdefault(name, now)
        for name, since in list(gone.items()):
            if name in listed or now - since > timedelta(days=GONE_NOTE_DAYS):
                del gone[name]
        current = KnownFolders(address, tuple(sorted(selected)), tuple(sorted(gone.items())))
        if (current.folders, current.gone) != (known.folders, known.gone):
            states.put_known_folders(current)
    except MailferryError as e:  # a note for the health row: never worth failing the poll
        log.warning("%s: could not read or write the folders selected last run: %s", address, e)
        return []
    for name in gone:
        log.info("%s: folder %s is no longer on the server (its blobs and checkpoint stay)",
                 address, name)
    return [FolderResult(name, gone_since=since) for name, since in sorted(gone.items())]
