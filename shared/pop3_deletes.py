"""After delivery over POP3: ``delete`` marks each message whose blob is stored (DELE).

POP3 removes marked messages only when the session ends with QUIT: a run killed before its
QUIT deletes nothing, and the next run finds those messages again with their blobs already
stored (``already_present``), then marks them again. The blobs are listed once per run (the
mailbox's POP3 blobs), never checked one request per message. ``keep`` does nothing.
"""

from __future__ import annotations

import logging

from shared.delivery_actions import POP3_KINDS
from shared.mailbox_list import MailboxConfig
from shared.mailbox_plan import PollParts
from shared.model import FolderResult
from shared.naming import pop3_blob_name, pop3_prefix
from shared.ports import Pop3Session

log = logging.getLogger("mailferry.actions")

# Messages marked between two looks at the clock.
_DELE_STEP = 50


def delete_delivered(parts: PollParts, session: Pop3Session, mailbox: MailboxConfig, deadline: float,
                     result: FolderResult) -> None:
    """Mark for deletion every message of the maildrop whose blob is stored (``delete``)."""
    address, sink, clock = mailbox.address, parts.sink, parts.clock
    action = mailbox.action_for("INBOX", parts.options.after_delivery)
    if action.is_keep:
        return
    if action.kind not in POP3_KINDS:
        result.error = (f"POP3 can only keep or delete, and AFTER_DELIVERY is {action}: the "
                        "messages are kept. Set keep or delete for this mailbox, or read it over IMAP.")
        log.error("after-delivery action failed: %s: %s", address, result.error)
        return
    listed = session.list_uidls()
    if not listed:
        return
    stored = {name for name, _ in sink.list_dedup_keys(pop3_prefix(address))}
    ready = [number for number, uidl in listed if pop3_blob_name(address, uidl) in stored]
    result.actions_pending = len(listed) - len(ready)
    for index, number in enumerate(ready):
        if index % _DELE_STEP == 0 and clock.monotonic() >= deadline:
            result.complete = False
            result.actions_pending += len(ready) - index
            log.warning("%s: time box reached; %d POP3 message(s) are deleted by the next run",
                        address, len(ready) - index)
            return
        session.dele(number)
        result.acted += 1


__all__ = ["delete_delivered"]
