"""After delivery: act on a folder's delivered messages (AFTER_DELIVERY), each exactly once,
and never on one whose blob is not stored.

How the checkpoint and the actions interact. The checkpoint is unchanged: every message at or
below ``last_uid`` has its blob. A second row per folder (``ActionState``) says how far the
actions went: ``acted_through_uid``. The pending actions are the messages still in the folder
with a UID above ``acted_through_uid`` and at or below ``last_uid`` (for ``seen``: the unseen
ones). The phase runs after the folder's delivery, in the same session:

1. one SEARCH for the pending UIDs, and one listing of the blobs of that UID range (a few
   prefix listings, never a request per message);
2. only messages whose blob is listed are acted on, in batches written as UID sets; after a
   UIDVALIDITY reset, a message the delivery skipped as delivered before is acted on when its
   dedup key matches a blob stored under the old UIDVALIDITY;
3. ``acted_through_uid`` moves to the last UID acted on (past messages without a blob, which
   are left in place and logged), ETag-guarded.

A run that dies anywhere converges: the next run searches from ``acted_through_uid`` again;
a message already moved or deleted is no longer in the folder, one already seen is no longer
unseen, so each gets its action once. A move without MOVE (COPY, then STORE \\Deleted and
UID EXPUNGE) first writes the batch and the target's UIDNEXT to the row; a run that finds
that journal checks the target for the copies (by dedup key) before copying again
(``shared.copy_recovery``). Never a plain EXPUNGE: it would remove messages other clients
flagged.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from shared.action_ports import ActionStateStore
from shared.copy_recovery import message_keys, recover_copy
from shared.dedup import is_current_key
from shared.delivery_actions import Action, ActionState
from shared.errors import ActionUnavailable, CheckpointConflict
from shared.mailbox_plan import FolderPlan, PollParts, plan_mailbox
from shared.model import Checkpoint, FolderResult, PollOptions
from shared.naming import folder_prefix, uid_of, uid_range_prefixes, uidvalidity_of
from shared.pop3_deletes import delete_delivered
from shared.ports import CheckpointStore, Clock, MailSession, MessageSink

log = logging.getLogger("mailferry.actions")

SEEN, DELETED = "\\Seen", "\\Deleted"


class FolderActions:
    """The after-delivery phase of one folder, in the session that delivered it."""

    def __init__(self, session: MailSession, address: str, folder: str, action: Action, *,
                 sink: MessageSink, checkpoints: CheckpointStore, states: ActionStateStore,
                 capabilities: frozenset[str], options: PollOptions, clock: Clock, deadline: float,
                 result: FolderResult) -> None:
        self.session = session
        self.address = address
        self.folder = folder
        self.action = action
        self.sink = sink
        self.checkpoints = checkpoints
        self.states = states
        self.capabilities = capabilities
        self.options = options
        self.clock = clock
        self.deadline = deadline
        self.result = result

    def run(self) -> None:
        checkpoint = self.checkpoints.get_checkpoint(self.address, self.folder)
        if checkpoint is None or checkpoint.last_uid == 0:
            return
        stored = self.states.get_action_state(self.address, self.folder)
        state = stored or ActionState(self.address, self.folder, checkpoint.uidvalidity)
        if state.uidvalidity != checkpoint.uidvalidity:
            # The folder was renumbered: UIDs acted on before mean nothing now.
            state = ActionState(self.address, self.folder, checkpoint.uidvalidity, etag=state.etag)
        if state.acted_through_uid >= checkpoint.last_uid and not state.copy_uids:
            return  # nothing delivered since the phase last ran: not one command
        if self._time_is_up():
            return
        self._check_capabilities()
        opened = self.session.select_folder_writable(self.folder)
        if opened.uidvalidity != checkpoint.uidvalidity:
            log.info("%s/%s: UIDVALIDITY changed since delivery; the next run resyncs, then acts",
                     self.address, self.folder)
            return
        if state.copy_uids:
            state = recover_copy(self.session, self.folder, state, batch=self.options.fetch_batch_size,
                                 large=self.options.large_message_bytes)
        state = self._act_on_pending(state, checkpoint)
        if stored is None or state != stored:
            self.states.put_action_state(state)

    def _act_on_pending(self, state: ActionState, checkpoint: Checkpoint) -> ActionState:
        first, last = state.acted_through_uid + 1, checkpoint.last_uid
        pending = self.session.search_uids_between(first, last, unseen=self.action.kind == "seen")
        if not pending:
            return replace(state, acted_through_uid=last, pending=0, without_blob=0)
        stored = self._stored_uids(checkpoint.uidvalidity, pending[0], pending[-1])
        ready = [uid for uid in pending if uid in stored]
        missing = [uid for uid in pending if uid not in stored]
        resynced = [uid for uid in missing if uid <= checkpoint.dedup_through_uid]
        if resynced:
            ready = sorted(ready + self._delivered_before_reset(resynced, checkpoint))
        without_blob = len(pending) - len(ready)
        if without_blob:
            log.warning("%s/%s: %d message(s) up to the checkpoint have no blob (removed from the "
                        "container?); they are left in the folder, not acted on", self.address,
                        self.folder, without_blob)
        done = 0
        for start in range(0, len(ready), self.options.fetch_batch_size):
            if self._time_is_up():
                break
            batch = ready[start:start + self.options.fetch_batch_size]
            state = self._apply(batch, state)
            done += len(batch)
        self.result.acted += done
        self.result.actions_pending = len(ready) - done
        through = last if done == len(ready) else ready[done] - 1
        return replace(state, acted_through_uid=max(through, state.acted_through_uid),
                       pending=len(ready) - done, without_blob=without_blob, copy_uids=(),
                       copy_target=None, copy_target_uidvalidity=0, copy_target_uidnext=0)

    def _apply(self, batch: Sequence[int], state: ActionState) -> ActionState:
        """The action on one batch; the state as it now stands (a journal for COPY)."""
        kind, session = self.action.kind, self.session
        if kind == "seen":
            session.uid_store_flags(batch, [SEEN])
        elif kind == "delete":
            session.uid_store_flags(batch, [DELETED])
            session.uid_expunge(batch)
        elif "MOVE" in self.capabilities:
            session.uid_move(batch, self._target)
        else:
            target = session.folder_status(self._target)
            # Written before the COPY: a run that dies before the EXPUNGE leaves this journal,
            # and the next run looks in the target before copying again.
            state = self.states.put_action_state(replace(
                state, copy_uids=tuple(batch), copy_target=self._target,
                copy_target_uidvalidity=target.uidvalidity, copy_target_uidnext=target.uidnext or 0))
            session.uid_copy(batch, self._target)
            session.uid_store_flags(batch, [DELETED])
            session.uid_expunge(batch)
        return state

    @property
    def _target(self) -> str:
        assert self.action.target is not None  # a move always has one
        return self.action.target

    def _stored_uids(self, uidvalidity: int, first: int, last: int) -> set[int]:
        """UIDs from ``first`` to ``last`` whose blob is stored: one listing of the range."""
        base = f"{folder_prefix(self.address, self.folder)}{uidvalidity}/"
        found: set[int] = set()
        for prefix in uid_range_prefixes(first, last):
            for name, _ in self.sink.list_dedup_keys(base + prefix):
                uid = uid_of(name)
                if uid is not None and first <= uid <= last:
                    found.add(uid)
        return found

    def _delivered_before_reset(self, uids: list[int], checkpoint: Checkpoint) -> list[int]:
        """Those of ``uids`` (skipped by a resync) whose dedup key matches a blob stored under an
        earlier UIDVALIDITY, each blob counted once."""
        prefix = folder_prefix(self.address, self.folder)
        old: Counter[str] = Counter(
            key for name, key in self.sink.list_dedup_keys(prefix)
            if uidvalidity_of(name, prefix) not in (None, checkpoint.uidvalidity) and is_current_key(key))
        matched = []
        keys = message_keys(self.session, uids, batch=self.options.fetch_batch_size,
                            large=self.options.large_message_bytes)
        for uid in uids:
            key = keys.get(uid)
            if key is not None and old[key] > 0:
                old[key] -= 1
                matched.append(uid)
        return matched

    def _check_capabilities(self) -> None:
        kind = self.action.kind
        if kind == "seen" or "UIDPLUS" in self.capabilities:
            return
        if kind == "move" and "MOVE" in self.capabilities:
            return
        needs = "MOVE or UIDPLUS (UID EXPUNGE)" if kind == "move" else "UIDPLUS (UID EXPUNGE)"
        raise ActionUnavailable(
            f"{self.address}/{self.folder}: AFTER_DELIVERY {self.action} needs {needs}, which the "
            f"server does not offer ({' '.join(sorted(self.capabilities)) or 'no capabilities'}); "
            "mail is still delivered and kept. A plain EXPUNGE would also remove messages other "
            "clients flagged, so mailferry never sends one: use keep or seen for this mailbox.")

    def _time_is_up(self) -> bool:
        if self.clock.monotonic() < self.deadline:
            return False
        self.result.complete = False
        log.warning("%s/%s: time box reached; the next run continues the after-delivery actions",
                    self.address, self.folder)
        return True


def act_after_delivery(parts: PollParts, session: MailSession, plan: FolderPlan, deadline: float,
                       result: FolderResult) -> None:
    """The after-delivery phase of one delivered folder; nothing at all for ``keep``.

    An action the server refuses is recorded as the folder's error (its mail is delivered
    all the same); another run acting in the folder meanwhile leaves it to that run.
    """
    address, folder, action = plan.address, plan.folder, plan.action
    if action.is_keep or result.error is not None:
        return
    if parts.action_states is None:
        raise RuntimeError("this poller was built without an action state store")
    try:
        FolderActions(session, address, folder, action, sink=parts.sink, checkpoints=parts.checkpoints,
                      states=parts.action_states, capabilities=plan.capabilities,
                      options=parts.options, clock=parts.clock, deadline=deadline, result=result).run()
    except ActionUnavailable as e:
        result.error = str(e)
        log.error("after-delivery action failed: %s/%s: %s", address, folder, e)
    except CheckpointConflict:
        log.info("%s/%s: another run is acting on this folder; this run leaves it to that one",
                 address, folder)


# The poller's hooks come from here: planning a mailbox, acting after each folder, POP3 deletes.
__all__ = ["FolderActions", "act_after_delivery", "delete_delivered", "plan_mailbox"]
