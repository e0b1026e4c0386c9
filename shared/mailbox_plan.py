"""What one run does in a mailbox: which folders (patterns resolved with one LIST), the
after-delivery action of each, the server's capabilities, and the folders gone since.

A mailbox with folder names only and ``keep`` everywhere costs nothing here: no LIST, no
CAPABILITY. Move targets are created when missing and are never polled themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from shared.action_ports import ActionStateStore
from shared.delivery_actions import Action, KnownFolders
from shared.errors import ActionUnavailable, MailferryError
from shared.folder_patterns import parse_entry, resolve_folders, uses_patterns
from shared.mailbox_list import MailboxConfig
from shared.model import FolderResult, MailboxResult, PollOptions
from shared.ports import CheckpointStore, Clock, MailSession, MessageSink

log = logging.getLogger("mailferry.poll")

# A folder gone from the server is noted in the health row for this long, then forgotten.
GONE_NOTE_DAYS = 30


class PollParts(Protocol):
    """What the after-delivery phase uses of the poller."""

    @property
    def sink(self) -> MessageSink: ...

    @property
    def checkpoints(self) -> CheckpointStore: ...

    @property
    def action_states(self) -> ActionStateStore | None: ...

    @property
    def options(self) -> PollOptions: ...

    @property
    def clock(self) -> Clock: ...


@dataclass(frozen=True)
class FolderPlan:
    """One folder to poll, its after-delivery action and what the server offers for it."""

    address: str
    folder: str
    action: Action
    capabilities: frozenset[str] = frozenset()


def plan_mailbox(parts: PollParts, session: MailSession, mailbox: MailboxConfig,
                 result: MailboxResult) -> list[tuple[str, FolderPlan]]:
    """The folders to poll in order, each with its plan; what the health row should note (a
    folder gone, a pattern that matches nothing) is added to ``result``."""
    plan = _plan(session, mailbox, default=parts.options.after_delivery, states=parts.action_states,
                 now=parts.clock.now())
    result.folders.extend(plan.notes)
    return [(folder, FolderPlan(mailbox.address, folder, action, plan.capabilities))
            for folder, action in plan.folders]


@dataclass
class _MailboxPlan:
    folders: list[tuple[str, Action]]
    capabilities: frozenset[str]
    notes: list[FolderResult]


def _plan(session: MailSession, mailbox: MailboxConfig, *, default: Action,
          states: ActionStateStore | None, now: datetime) -> _MailboxPlan:
    """At most one CAPABILITY and one LIST."""
    entries = mailbox.folders
    actions = {entry: mailbox.action_for(entry, default) for entry in entries}
    acting = any(not a.is_keep for a in actions.values())
    capabilities = session.capabilities() if acting else frozenset()
    targets = sorted({a.target for a in actions.values() if a.kind == "move" and a.target})
    patterns = uses_patterns(entries)
    if not patterns and not targets:
        return _MailboxPlan([(entry, actions[entry]) for entry in entries], capabilities, [])
    listed = session.list_folders()
    resolution = resolve_folders(entries, listed, never=targets)
    plan = _MailboxPlan([(name, actions[entry]) for name, entry in resolution.folders], capabilities,
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
