"""One mailbox's poll over its one connection for the run: IMAP folder by folder, or the
POP3 Inbox. A dropped connection is reopened (``reconnect``) within the mailbox's share of
the time box (``time_box``), and the work resumes from what is stored."""

from __future__ import annotations

import logging
from typing import Protocol

from shared.after_delivery import act_after_delivery, delete_delivered, plan_mailbox
from shared.batching import BatchLimits
from shared.errors import CheckpointConflict, FolderUnavailable
from shared.folder_flow import FolderTools
from shared.folder_poll import BATCH_BYTES, FolderPoll
from shared.log_texts import FOLDER_FAILURE_LOG_TEXT
from shared.mailbox_list import MailboxConfig
from shared.mailbox_plan import FolderPlan, PollParts
from shared.model import FolderResult, MailboxResult, Secret
from shared.pop3_poll import Pop3Poll
from shared.ports import (
    MailServer,
    MailSession,
    PollObserver,
    Pop3CheckpointStore,
    Pop3Server,
    Pop3Session,
    ThreadStart,
)
from shared.reconnect import Goodbyes, MailboxConnection, ReconnectPolicy
from shared.time_box import TimeBox

log = logging.getLogger("mailferry.poll")


class MailboxParts(PollParts, Protocol):
    """What a mailbox's poll uses of the poller."""

    @property
    def server(self) -> MailServer: ...

    @property
    def pop3(self) -> Pop3Server | None: ...

    @property
    def pop3_checkpoints(self) -> Pop3CheckpointStore | None: ...

    @property
    def reconnect(self) -> ReconnectPolicy: ...


def poll_imap(parts: MailboxParts, mailbox: MailboxConfig, token: Secret, deadline: float,
              observer: PollObserver, result: MailboxResult, on_thread_start: ThreadStart,
              goodbyes: Goodbyes | None = None) -> None:
    """Every folder of an IMAP mailbox over one connection, then its after-delivery actions;
    the session's LOGOUT is left to ``goodbyes`` when given."""
    time_box = TimeBox(deadline)
    tools = FolderTools(parts.sink, parts.checkpoints, parts.options, parts.clock, observer,
                        on_thread_start)
    # Halved by drops, for every folder of the mailbox in this run.
    limits = BatchLimits(parts.options.fetch_batch_size, BATCH_BYTES)
    scope = mailbox.first_run or parts.options.first_run
    with MailboxConnection(
            lambda: parts.server.open(mailbox.address, token, deadline=time_box.reads_end),
            address=mailbox.address, policy=parts.reconnect, clock=parts.clock,
            time_box=time_box, on_thread_start=on_thread_start,
            goodbyes=goodbyes) as connection:
        for folder, plan in _plan(parts, connection, mailbox, result):
            folder_result = FolderResult(folder)
            result.folders.append(folder_result)
            poll = FolderPoll(mailbox.address, folder, tools, result=folder_result,
                              time_box=time_box, limits=limits, scope=scope,
                              on_dropped=connection.dropped)

            def act(session: MailSession, plan: FolderPlan = plan,
                    done: FolderResult = folder_result) -> None:
                act_after_delivery(parts, session, plan, time_box.ends, done)

            try:
                with poll:  # uploads a drop left running are settled whatever happens
                    connection.run(poll.run, progress=poll.progress,
                                   moved=poll.arrivals, settle=poll.settle)
                connection.run(act, progress=poll.progress)
            except FolderUnavailable as e:
                # One bad folder must not hide the others, run after run.
                folder_result.error = str(e)
                log.error("%s: %s/%s: %s", FOLDER_FAILURE_LOG_TEXT, mailbox.address, folder, e)
                continue
            except CheckpointConflict:
                # Another run is delivering this folder right now; nothing is wrong.
                folder_result.yielded = True
                log.info("%s/%s: another run advanced the checkpoint first; this run leaves "
                         "the folder to it", mailbox.address, folder)
                continue
            if not folder_result.complete:
                break


def _plan(parts: MailboxParts, connection: MailboxConnection[MailSession], mailbox: MailboxConfig,
          result: MailboxResult) -> list[tuple[str, FolderPlan]]:
    """The mailbox's folders and their plans, asked again if the connection drops."""
    plans: list[tuple[str, FolderPlan]] = []
    noted = len(result.folders)

    def plan(session: MailSession) -> None:
        del result.folders[noted:]  # the notes of an attempt that dropped
        plans[:] = plan_mailbox(parts, session, mailbox, result)

    connection.run(plan, progress=lambda: "no folder delivered yet")
    return plans


def poll_pop3(parts: MailboxParts, mailbox: MailboxConfig, token: Secret, deadline: float,
              observer: PollObserver, result: FolderResult, on_thread_start: ThreadStart) -> None:
    """The Inbox of a POP3 mailbox (POP3 sees no other folder; see pop3_poll)."""
    address = mailbox.address
    pop3, checkpoints = parts.pop3, parts.pop3_checkpoints
    if pop3 is None or checkpoints is None:
        raise RuntimeError("this poller was built without a POP3 server or checkpoint store")
    time_box = TimeBox(deadline)
    poll = Pop3Poll(address, sink=parts.sink, checkpoints=checkpoints, clock=parts.clock,
                    time_box=time_box, observer=observer, batch_size=parts.options.fetch_batch_size,
                    upload_concurrency=parts.options.upload_concurrency,
                    large_message_bytes=parts.options.large_message_bytes, result=result,
                    on_thread_start=on_thread_start,
                    scope=mailbox.first_run or parts.options.first_run)

    def deliver(session: Pop3Session) -> None:
        poll.run(session)
        delete_delivered(parts, session, mailbox, time_box.ends, result)

    # Its QUIT is waited for (no goodbyes): POP3 carries out the run's deletions only then.
    with MailboxConnection(lambda: pop3.open(address, token, deadline=time_box.reads_end),
                           address=address, policy=parts.reconnect, clock=parts.clock,
                           time_box=time_box) as connection:
        try:
            connection.run(deliver, progress=poll.progress)
        except CheckpointConflict:
            result.yielded = True
            log.info("%s: another run advanced the POP3 checkpoint first; this run leaves "
                     "the mailbox to it", address)
