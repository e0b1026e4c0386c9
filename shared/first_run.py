"""The first-run scope in the poll: where a new folder's checkpoint starts, and which UIDs a
scoped pass may deliver.

A scope resolves to a cut-off internal date (``Checkpoint.not_before``) that applies to the
UIDs the folder held when its checkpoint was made (up to ``scope_through_uid``); UIDs above
them are delivered as usual, whatever their date. ``new`` starts the checkpoint at the
highest UID, so the cut-off (the first poll's time) only matters after a UIDVALIDITY reset.
``since`` finds its candidates with ``UID SEARCH SINCE``, which compares days as the server
reads them: it is asked a day early, and the exact internal dates from the size FETCH decide.

After a reset every message gets a new UID, so the cut-off is all that is left to tell old
mail from new: the new checkpoint keeps it and applies it to every UID the folder now holds.
Internal dates have one-second precision: a message of the cut-off's own second is in scope
(when in doubt, deliver).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.errors import ConfigurationError
from shared.history_scope import FirstRunScope
from shared.model import Checkpoint, MessageInfo, Pop3Checkpoint
from shared.ports import CheckpointStore, MailSession

log = logging.getLogger("mailferry.poll")


def starting_checkpoint(fresh: Checkpoint, *, previous: Checkpoint | None, scope: FirstRunScope,
                        session: MailSession, now: datetime) -> Checkpoint:
    """The checkpoint a folder starts (or, after a reset, starts over) from.

    ``fresh`` is the unscoped start at UID 0. After a reset (``previous`` given) the scope
    the folder began with keeps its meaning and ``scope`` is ignored: changing the setting
    never brings old mail back.
    """
    if previous is not None:
        if previous.not_before is None:
            return replace(fresh, first_run=previous.first_run)
        highest = fresh.dedup_through_uid or _highest_uid(session)
        return replace(fresh, first_run=previous.first_run, not_before=previous.not_before,
                       scope_through_uid=highest)
    if scope.kind == "all":
        return fresh
    existing = session.search_uids_from(1)
    highest = max(existing, default=0)
    where = f"{fresh.mailbox}/{fresh.folder}"
    if scope.kind == "new":
        log.info("%s: first poll with first run 'new': the %d message(s) there are left out; "
                 "mail arriving from now on is delivered", where, len(existing))
        return replace(fresh, first_run=str(scope), last_uid=highest, scope_through_uid=highest,
                       not_before=now.astimezone(UTC).replace(microsecond=0))
    log.info("%s: first poll with first run '%s': messages up to UID %d are delivered if the "
             "server received them on or after %s UTC", where, scope, highest, scope.cutoff)
    return replace(fresh, first_run=str(scope), not_before=scope.cutoff,
                   scope_through_uid=highest)


def candidates(session: MailSession, checkpoint: Checkpoint, uids: list[int]) -> list[int]:
    """``uids`` less those of the scoped range that ``UID SEARCH SINCE`` rules out."""
    not_before = checkpoint.not_before
    if not_before is None or all(uid > checkpoint.scope_through_uid for uid in uids):
        return uids
    # Asked a day early: the server reads days in the internal date's own time zone.
    listed = set(session.search_uids_since(_utc(not_before).date() - timedelta(days=1)))
    return [uid for uid in uids if uid > checkpoint.scope_through_uid or uid in listed]


def in_scope(checkpoint: Checkpoint, infos: Iterable[MessageInfo],
             store: CheckpointStore) -> tuple[Checkpoint, list[MessageInfo]]:
    """The messages the scope lets through (an unknown date counts as in scope), and the
    checkpoint moved past the UIDs it leaves out below the first of them."""
    infos = list(infos)
    not_before = checkpoint.not_before
    through = checkpoint.scope_through_uid
    if not_before is None or checkpoint.last_uid >= through:
        return checkpoint, infos
    cutoff = _utc(not_before)
    kept = [info for info in infos if info.uid > through or info.internal_date is None
            or _utc(info.internal_date) >= cutoff]
    # Every UID above the checkpoint was searched for: those below the first kept one within
    # the scoped range are all out of scope, so the checkpoint may pass them now.
    skip_to = min((info.uid for info in kept if info.uid <= through), default=through + 1) - 1
    if skip_to > checkpoint.last_uid:
        checkpoint = store.put_checkpoint(replace(checkpoint, last_uid=skip_to))
    return checkpoint, kept


def pop3_starting_checkpoint(scope: FirstRunScope, address: str,
                             listed: Iterable[bytes]) -> Pop3Checkpoint | None:
    """The POP3 checkpoint a first poll stores without delivering (``new``: the maildrop as
    it is, by UIDL digest), or None to deliver everything (``all``)."""
    if scope.kind == "all":
        return None
    if scope.kind != "new":
        raise ConfigurationError([
            f"{address} is read over POP3 with first run {str(scope)!r}, but POP3 gives no "
            "dates to choose messages by: set FIRST_RUN (or this mailbox's first_run in "
            "MAILBOXES) to all or new, or read the mailbox over IMAP."])
    return Pop3Checkpoint(address, frozenset(listed), first_run=str(scope))


def describe(first_run: str, not_before: datetime | None) -> str:
    """A checkpoint's scope for people: ``new`` says from when."""
    if first_run == "new" and not_before is not None:
        return f"new (mail received from {_utc(not_before):%Y-%m-%d %H:%M:%S} UTC)"
    return first_run


def _highest_uid(session: MailSession) -> int:
    return max(session.search_uids_from(1), default=0)


def _utc(moment: datetime) -> datetime:
    # A naive date is local time: IMAP libraries give internal dates so.
    return moment.astimezone(UTC)


__all__ = ["candidates", "describe", "in_scope", "pop3_starting_checkpoint", "starting_checkpoint"]
