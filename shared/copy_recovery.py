"""Repairing a move without MOVE that a run left halfway, and reading messages' dedup keys.

Without MOVE a batch is moved by ``UID COPY`` to the target, then ``UID STORE +FLAGS
(\\Deleted)`` and ``UID EXPUNGE`` in the source. A run that dies after the COPY and before
the EXPUNGE leaves the batch in both folders. Before each COPY the after-delivery phase
writes a journal: the batch, and the target's UIDVALIDITY and UIDNEXT. A COPY is all or
nothing (RFC 3501), and copies keep their bytes and internal date, so the copies of that
batch, if any, are among the target's messages from that UIDNEXT on, with the same dedup
keys (``shared.dedup``). Those of the batch still in the source that are matched there one to
one are only flagged and expunged; the others stay pending and are copied as usual.

If the target's UIDVALIDITY changed meanwhile, its copies cannot be found: the batch is copied
again (a second copy in the target, never a message lost).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace

from shared.dedup import MessageDigest, dedup_key
from shared.delivery_actions import ActionState
from shared.ports import MailSession
from shared.streamed import STREAM_CHUNK

log = logging.getLogger("mailferry.actions")

DELETED = "\\Deleted"


def recover_copy(session: MailSession, folder: str, state: ActionState, *, batch: int,
                 large: int) -> ActionState:
    """Finish the journaled batch of ``state`` in ``folder`` (selected read-write); the state
    without the journal. ``folder`` is selected read-write again when this returns."""
    journal = sorted(state.copy_uids)
    done = replace(state, copy_uids=(), copy_target=None, copy_target_uidvalidity=0,
                   copy_target_uidnext=0)
    present = [uid for uid in session.search_uids_between(journal[0], journal[-1]) if uid in journal]
    if not present or state.copy_target is None:
        return done
    source_keys = message_keys(session, present, batch=batch, large=large)
    target = session.select_folder(state.copy_target)
    copies: Counter[str] = Counter()
    if target.uidvalidity == state.copy_target_uidvalidity:
        arrived = [u for u in session.search_uids_from(state.copy_target_uidnext)
                   if u >= state.copy_target_uidnext]
        copies.update(message_keys(session, arrived, batch=batch, large=large).values())
    else:
        log.warning("%s: the UIDVALIDITY of %s changed since a COPY was interrupted; its %d "
                    "message(s) are copied again", state.mailbox, state.copy_target, len(present))
    session.select_folder_writable(folder)
    copied = []
    for uid in present:
        key = source_keys.get(uid)
        if key is not None and copies[key] > 0:
            copies[key] -= 1
            copied.append(uid)
    if copied:
        log.info("%s/%s: %d message(s) of an interrupted move were copied already; removing "
                 "them from the folder", state.mailbox, folder, len(copied))
        session.uid_store_flags(copied, [DELETED])
        session.uid_expunge(copied)
    return done


def message_keys(session: MailSession, uids: Sequence[int], *, batch: int,
                 large: int) -> dict[int, str]:
    """The dedup key of each of these messages in the selected folder (those still there):
    batches of whole messages, and a large one piece by piece so memory stays bounded."""
    keys: dict[int, str] = {}
    infos = session.fetch_info(uids)
    small = [i.uid for i in infos if i.size < large]
    for start in range(0, len(small), max(1, batch)):
        for message in session.fetch(small[start:start + max(1, batch)]):
            keys[message.uid] = dedup_key(message.raw, message.internal_date)
    for info in (i for i in infos if i.size >= large):
        body = session.fetch_pieces(info.uid, STREAM_CHUNK)
        if body is None:
            continue  # gone
        digest = MessageDigest()
        with closing(body):
            for piece in body:
                digest.update(piece)
        keys[info.uid] = digest.dedup_key(info.internal_date)
    return keys
