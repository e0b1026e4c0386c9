"""The doctor's checks of a mailbox's after-delivery actions and folder patterns.

In a session of their own, after the doctor's login succeeded: the capabilities each action
needs (MOVE, or UIDPLUS for COPY/STORE/UID EXPUNGE and for delete), the move target (created
when missing, as the first poll would: that is how to learn it can be), and what the folder
patterns select now.
"""

from __future__ import annotations

from typing import Literal

from shared.adapters.imap import ImapServer
from shared.delivery_actions import POP3_KINDS, Action
from shared.errors import ActionUnavailable, FailureKind, MailferryError
from shared.folder_patterns import ListedFolder, resolve_folders, uses_patterns
from shared.mailbox_list import MailboxConfig
from shared.model import Secret
from shared.ports import MailSession
from shared.settings import Settings

Status = Literal["ok", "fail", "warn", "skip"]
Check = tuple[str, Status, str, FailureKind | None]
_SHOWN = 12  # folder names shown in a detail line


def after_delivery_checks(settings: Settings, mailbox: MailboxConfig, token: Secret, *,
                          timeout: float) -> list[Check]:
    """One check per distinct action of the mailbox, and one for its folder patterns."""
    actions = sorted({a for a in mailbox.actions(settings.poll.after_delivery) if not a.is_keep}, key=str)
    if mailbox.protocol == "pop3":
        return [_pop3_check(action) for action in actions]
    patterns = uses_patterns(mailbox.folders)
    if not actions and not patterns:
        return []
    server = ImapServer(settings.imap.host, settings.imap.port, security=settings.imap.security,
                        ca_bundle=settings.ca_bundle, timeout=timeout)
    try:
        with server.open(mailbox.address, token) as session:
            listed = session.list_folders()
            checks = [_pattern_check(mailbox, listed, actions)] if patterns else []
            capabilities = session.capabilities() if actions else frozenset()
            names = {f.name for f in listed}
            return checks + [_imap_check(session, action, capabilities, names) for action in actions]
    except MailferryError as e:
        return [("after delivery", "fail", str(e), e.kind)]


def _pop3_check(action: Action) -> Check:
    if action.kind in POP3_KINDS:
        return (f"after delivery: {action}", "ok", "DELE once each blob is stored, committed by QUIT", None)
    return (f"after delivery: {action}", "fail", "POP3 can only keep or delete", FailureKind.SETTING)


def _pattern_check(mailbox: MailboxConfig, listed: list[ListedFolder], actions: list[Action]) -> Check:
    targets = [a.target for a in actions if a.target]
    resolution = resolve_folders(mailbox.folders, listed, never=targets)
    chosen = [name for name, _ in resolution.folders]
    shown = ", ".join(chosen[:_SHOWN]) + (f" and {len(chosen) - _SHOWN} more" if len(chosen) > _SHOWN else "")
    detail = f"{' | '.join(mailbox.folders)} select {len(chosen)} folder(s): {shown or 'none'}"
    if resolution.problems:
        detail += "; " + "; ".join(f"{entry}: {why}" for entry, why in resolution.problems)
        return ("folders by pattern", "warn", detail, None)
    return ("folders by pattern", "ok" if chosen else "warn", detail, None)


def _imap_check(session: MailSession, action: Action, capabilities: frozenset[str],
                folders: set[str]) -> Check:
    name = f"after delivery: {action}"
    how = _commands(action, capabilities)
    if how is None:
        needs = "neither MOVE nor UIDPLUS" if action.kind == "move" else "no UIDPLUS (UID EXPUNGE)"
        return (name, "fail", f"the server offers {needs}, and mailferry never sends a plain "
                "EXPUNGE (it would remove messages other clients flagged): use keep or seen",
                FailureKind.SERVER_ERROR)
    if action.target is None or action.target in folders:
        return (name, "ok", how + (f"; {action.target} exists" if action.target else ""), None)
    try:
        session.create_folder(action.target)
    except ActionUnavailable as e:
        return (name, "fail", f"{action.target} is missing and cannot be created: {e}",
                FailureKind.FOLDER_MISSING)
    return (name, "ok", f"{how}; {action.target} was missing and is now created (the first poll "
            "would have created it)", None)


def _commands(action: Action, capabilities: frozenset[str]) -> str | None:
    """How the server will be asked to carry out ``action``; None when it cannot be."""
    uidplus = "UIDPLUS" in capabilities
    if action.kind == "seen":
        return "UID STORE +FLAGS (\\Seen)"
    if action.kind == "delete":
        return "UID STORE +FLAGS (\\Deleted), then UID EXPUNGE" if uidplus else None
    if "MOVE" in capabilities:
        return "UID MOVE"
    return "no MOVE offered: UID COPY, UID STORE +FLAGS (\\Deleted), UID EXPUNGE" if uidplus else None
