"""After a UIDVALIDITY change: which messages were delivered under an earlier one.

Every blob stored under an earlier UIDVALIDITY of the folder counts once, by its dedup key
(``shared.dedup``): a multiset. A message of the resynced range is skipped only when it
takes one of those blobs, so two messages are never matched against one blob; a copy
beyond the stored count is delivered. Keys in an older format never match.

A resync can span runs (time box, crash), and which blobs the earlier runs took is not
stored. A run that resumes one works it out: the messages at or below the checkpoint that
have no blob under the new UIDVALIDITY are the ones skipped. Reading their keys would mean
fetching them whole again, so only their internal dates are read (one small FETCH), and a
key gives up one blob for each of them that arrived in the same second as its message. That
can only make a message be delivered again, never lost.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from shared.dedup import internal_date_text, is_current_key
from shared.model import Checkpoint
from shared.naming import uid_of, uidvalidity_of
from shared.ports import MailSession, MessageSink

log = logging.getLogger("mailferry.poll")


class OldDeliveries:
    """The blobs stored under earlier UIDVALIDITY values, each taken at most once."""

    def __init__(self, keys: Counter[str] | None = None,
                 skipped_at: Counter[str] | None = None) -> None:
        self._keys = keys if keys is not None else Counter()
        # Internal dates of messages earlier runs of this resync skipped (each took a blob).
        self._skipped_at = skipped_at if skipped_at is not None else Counter()
        self._settled: set[str] = set()

    def __bool__(self) -> bool:
        return any(count > 0 for count in self._keys.values())

    def take(self, key: str, internal_date: datetime | None) -> bool:
        """Whether a message with this key was delivered before; if so its blob is used up."""
        if key not in self._settled:
            self._settled.add(key)
            earlier = self._skipped_at[internal_date_text(internal_date)]
            self._keys[key] = max(0, self._keys[key] - earlier)
        if self._keys[key] <= 0:
            return False
        self._keys[key] -= 1
        return True


def load_old_deliveries(sink: MessageSink, session: MailSession, prefix: str,
                        checkpoint: Checkpoint) -> OldDeliveries:
    """What is stored under ``prefix`` from other UIDVALIDITY values than the checkpoint's,
    less what earlier runs of this resync may have matched already."""
    keys: Counter[str] = Counter()
    stored_now: set[int] = set()
    older_format = 0
    for name, key in sink.list_dedup_keys(prefix):
        uidvalidity = uidvalidity_of(name, prefix)
        if uidvalidity is None:
            continue
        if uidvalidity == checkpoint.uidvalidity:
            uid = uid_of(name)
            if uid is not None:
                stored_now.add(uid)
        elif is_current_key(key):
            keys[key] += 1
        else:
            older_format += 1
    if older_format:
        log.warning("%s: %d blob(s) stored by an earlier version carry a dedup key that cannot "
                    "tell messages apart; messages matching them are delivered again",
                    prefix.rstrip("/"), older_format)
    skipped_at: Counter[str] = Counter()
    if checkpoint.last_uid > 0:
        skipped = [uid for uid in session.search_uids_from(1)
                   if uid <= checkpoint.last_uid and uid not in stored_now]
        if skipped:
            skipped_at = Counter(internal_date_text(info.internal_date)
                                 for info in session.fetch_info(skipped))
    return OldDeliveries(keys, skipped_at)
