"""How checkpoints, POP3 delivered sets and health rows are laid out as Table rows.

PartitionKey is the mailbox; RowKey is ``folder:<encoded folder>`` for a checkpoint,
``pop3`` for a POP3 mailbox's delivered set and ``health`` for the mailbox's health row.
Pure conversions: the table itself is reached in ``shared.adapters.table``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from shared.model import Checkpoint, Health, MailboxResult, Pop3Checkpoint
from shared.naming import DIGEST_BYTES, within_length

HEALTH = "health"
FOLDER = "folder:"
_KEY_LIMIT = 500  # a key holds at most 512 characters, and RowKeys start with 'folder:'


def row_key(text: str) -> str:
    """A PartitionKey or RowKey for ``text``: percent-encoded, at most 500 characters."""
    # Table keys may not hold / \ # ? or control characters; percent-encoding removes them all.
    # A longer one is cut and made unique again by a digest of the name.
    return within_length(quote(text, safe="@.+-_ "), _KEY_LIMIT, text)




def checkpoint_from(entity: dict[str, Any] | Any) -> Checkpoint:
    """The checkpoint a folder row holds."""
    metadata = getattr(entity, "metadata", {}) or {}
    mailbox = entity.get("Mailbox") or unquote(entity["PartitionKey"])
    folder = entity.get("Folder") or unquote(str(entity["RowKey"])[len(FOLDER):])
    # Rows written before first-run scopes existed took all the folder's mail.
    return Checkpoint(mailbox, folder, int(entity["UidValidity"]), int(entity["LastUid"]),
                      int(entity.get("DedupThroughUid", 0)), metadata.get("etag"),
                      first_run=str(entity.get("FirstRun") or "all"),
                      not_before=entity.get("NotBefore"),
                      scope_through_uid=int(entity.get("ScopeThroughUid", 0)))


def health_row(result: MailboxResult, previous: Health, at: datetime) -> dict[str, Any]:
    """The health row after ``result``, from the row before it. A throttled run is neither a
    success nor a failure: both streaks stay; a success ends the throttle streak."""
    failed, throttled, succeeded = result.failed, result.throttled_until is not None, result.ok
    folder_errors = "; ".join(f"{f.folder}: {f.error}" for f in result.folder_errors)
    row: dict[str, Any] = {
        "PartitionKey": row_key(result.address.lower()),
        "RowKey": HEALTH,
        "Mailbox": result.address,
        "LastAttemptAt": at,
        "LastRunDelivered": result.delivered,
        "DeliveredTotal": previous.delivered_total + result.delivered,
        "LastSuccessAt": at if succeeded else previous.last_success_at,
        # The last error stays visible after a recovery, with its time.
        "LastError": previous.last_error if succeeded
                     else f"{result.error_type}: {result.error}"[:2000],
        "LastErrorAt": previous.last_error_at if succeeded else at,
        "ConsecutiveFailures": 0 if succeeded else previous.consecutive_failures + failed,
        "FailingSince": None if succeeded else previous.failing_since or (at if failed else None),
        # Folders that could not be opened in the last run (cleared when they open again);
        # a failed run may not have reached them, so it keeps what the last one found.
        "FolderErrors": (folder_errors[:2000] or None) if succeeded else previous.folder_errors,
        # Folders selected by pattern that the server no longer lists: a note, not an error.
        "FoldersGone": (_gone(result) or None) if succeeded else previous.folders_gone,
        # No poll before ThrottledUntil; the streak (since, count) lasts until a success.
        "ThrottledUntil": None if succeeded else result.throttled_until or previous.throttled_until,
        "ThrottledSince": None if succeeded else previous.throttled_since or (at if throttled else None),
        "ThrottleCount": None if succeeded else previous.throttle_count + throttled or None,
    }
    return {k: v for k, v in row.items() if v is not None}


def health_from(entity: dict[str, Any] | Any) -> Health:
    """The health a mailbox's health row holds."""
    return Health(
        mailbox=entity.get("Mailbox") or unquote(entity["PartitionKey"]),
        last_attempt_at=entity.get("LastAttemptAt"),
        last_success_at=entity.get("LastSuccessAt"),
        delivered_total=int(entity.get("DeliveredTotal", 0)),
        last_run_delivered=int(entity.get("LastRunDelivered", 0)),
        last_error=entity.get("LastError"),
        last_error_at=entity.get("LastErrorAt"),
        failing_since=entity.get("FailingSince"),
        consecutive_failures=int(entity.get("ConsecutiveFailures", 0)),
        folder_errors=entity.get("FolderErrors"),
        folders_gone=entity.get("FoldersGone"),
        throttled_until=entity.get("ThrottledUntil"),
        throttled_since=entity.get("ThrottledSince"),
        throttle_count=int(entity.get("ThrottleCount", 0)),
    )


def _gone(result: MailboxResult) -> str:
    return "; ".join(f"{f.folder} (gone since {f.gone_since:%Y-%m-%d})"
                     for f in result.folders_gone)[:2000]


POP3 = "pop3"
POP3_CHUNK_PREFIX = "Delivered"
POP3_CHUNK_BYTES = 64 * 1024  # Table storage's limit for one binary property
# Binary travels as base64 (4/3 of its size) and Azurite measures that JSON against the
# 1 MiB entity limit: 11 full chunks (about 940 KiB of base64) stay under it everywhere.
POP3_CHECKPOINT_LIMIT = 11 * POP3_CHUNK_BYTES // DIGEST_BYTES


def pop3_checkpoint_from(mailbox: str, entity: dict[str, Any] | Any) -> Pop3Checkpoint:
    """The delivered set a POP3 row holds, unpacked from its binary chunks."""
    metadata = getattr(entity, "metadata", {}) or {}
    chunks: list[bytes] = []
    while f"{POP3_CHUNK_PREFIX}{len(chunks)}" in entity:
        chunks.append(bytes(entity[f"{POP3_CHUNK_PREFIX}{len(chunks)}"]))
    packed = b"".join(chunks)
    digests = frozenset(packed[i:i + DIGEST_BYTES] for i in range(0, len(packed), DIGEST_BYTES))
    return Pop3Checkpoint(entity.get("Mailbox") or mailbox, digests, metadata.get("etag"),
                          first_run=str(entity.get("FirstRun") or "all"))
