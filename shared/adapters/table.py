"""Checkpoints, POP3 delivered sets and health rows in one Table, every write ETag-guarded.

PartitionKey is the mailbox; RowKey is ``folder:<encoded folder>`` for a checkpoint,
``pop3`` for a POP3 mailbox's delivered set and ``health`` for the mailbox's health row.
(The mailbox registry shares the table under PartitionKey ``mailboxes``.)
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.storage_errors import STORAGE_FAILURES, create_table_if_missing, storage_error
from shared.adapters.table_rows import (
    FOLDER,
    HEALTH,
    POP3,
    POP3_CHECKPOINT_LIMIT,
    POP3_CHUNK_BYTES,
    POP3_CHUNK_PREFIX,
    checkpoint_from,
    health_from,
    health_row,
    pop3_checkpoint_from,
    row_key,
)
from shared.errors import CheckpointConflict, StorageError
from shared.model import Checkpoint, Health, MailboxResult, Pop3Checkpoint
from shared.naming import DIGEST_BYTES

_ROLE = "Storage Table Data Contributor"

# Overlapping runs of one mailbox retry their health update this often before giving up
# (at most about 6 s of back-off in all).
_HEALTH_ATTEMPTS = 12


class TableStateStore:
    """CheckpointStore, Pop3CheckpointStore and HealthStore over one table."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        # Each mailbox's health row as ``get_health`` last read it, for ``record_result``: a
        # poll reads the row first (is it throttled?) and writes it last. The write is
        # ETag-guarded, so a row another run changed meanwhile costs only the read it saves.
        self._health_read: dict[str, tuple[Health, str | None]] = {}

    def ensure_table(self) -> None:
        """Create the table if it is missing."""
        create_table_if_missing(self._table, role=_ROLE)

    def get_checkpoint(self, mailbox: str, folder: str) -> Checkpoint | None:
        try:
            entity = self._table.get_entity(row_key(mailbox.lower()), FOLDER + row_key(folder))
        except ResourceNotFoundError:
            return None
        except STORAGE_FAILURES as e:
            raise storage_error(f"read the checkpoint of {mailbox}/{folder}", e, role=_ROLE) from e
        return checkpoint_from(entity)

    def put_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        entity = {
            "PartitionKey": row_key(checkpoint.mailbox.lower()),
            "RowKey": FOLDER + row_key(checkpoint.folder),
            "Mailbox": checkpoint.mailbox,
            "Folder": checkpoint.folder,
            "UidValidity": checkpoint.uidvalidity,
            "LastUid": checkpoint.last_uid,
            "DedupThroughUid": checkpoint.dedup_through_uid,
            "FirstRun": checkpoint.first_run,
            "ScopeThroughUid": checkpoint.scope_through_uid,
        }
        if checkpoint.not_before is not None:
            entity["NotBefore"] = checkpoint.not_before
        etag = self._write_guarded(entity, checkpoint.etag,
                                   what=f"checkpoint of {checkpoint.mailbox}/{checkpoint.folder}",
                                   scope="folder")
        return replace(checkpoint, etag=etag)

    def list_checkpoints(self) -> list[Checkpoint]:
        rows = self._query(f"RowKey ge '{FOLDER}' and RowKey lt 'folder;'")
        return [checkpoint_from(e) for e in rows]

    def record_result(self, result: MailboxResult, *, at: datetime) -> Health:
        """Add one run's outcome to the mailbox's health row.

        Runs of one mailbox may overlap (a slow run and the next timer run, fan-out
        retries), so the counters are read and written under the row's ETag and the update
        is retried when another run wrote first: no run's count is lost.
        """
        read = self._health_read.pop(result.address.lower(), None)
        for attempt in range(_HEALTH_ATTEMPTS):
            previous, etag = read if read and attempt == 0 else self._get_health(result.address)
            row = health_row(result, previous, at)
            try:
                if etag is None:
                    self._table.create_entity(row)
                else:
                    # REPLACE, not MERGE, so a recovery really clears FailingSince.
                    self._table.update_entity(row, mode=UpdateMode.REPLACE, etag=etag,
                                              match_condition=MatchConditions.IfNotModified)
                return health_from(row)
            except (ResourceExistsError, ResourceModifiedError):
                # Jittered, growing back-off: contenders spread out instead of colliding again.
                time.sleep(random.uniform(0, min(1.0, 0.01 * 2 ** attempt)))  # noqa: S311
            except STORAGE_FAILURES as e:
                raise storage_error(f"write the health of {result.address}", e, role=_ROLE) from e
        raise StorageError(
            f"Could not write the health of {result.address}: {_HEALTH_ATTEMPTS} other runs "
            "changed it meanwhile. The delivery itself is unaffected."
        )

    def list_health(self) -> list[Health]:
        return [health_from(e) for e in self._query(f"RowKey eq '{HEALTH}'")]

    def get_health(self, mailbox: str) -> Health | None:
        health, etag = self._get_health(mailbox)  # one point read
        self._health_read[mailbox.lower()] = (health, etag)
        return health if etag is not None else None

    def record_queue_given_up(self, mailbox: str, *, attempts: int, at: datetime) -> None:
        """Note in the health row that the mailbox's fan-out message was given up.

        Called after record_result wrote the failure; merges, so the failure stays, and
        puts the note first in LastError, where status shows it.
        """
        note = f"Queue message given up after {attempts} attempts"
        previous = self._get_health(mailbox)[0].last_error
        row: dict[str, Any] = {
            "PartitionKey": row_key(mailbox.lower()),
            "RowKey": HEALTH,
            "Mailbox": mailbox,
            "QueueGivenUpAt": at,
            "QueueGivenUpAttempts": attempts,
            "LastError": f"{note}; last error: {previous}"[:2000] if previous else note,
            "LastErrorAt": at,
        }
        try:
            self._table.upsert_entity(row, mode=UpdateMode.MERGE)
        except STORAGE_FAILURES as e:
            raise storage_error(f"write the health of {mailbox}", e, role=_ROLE) from e

    def _get_health(self, mailbox: str) -> tuple[Health, str | None]:
        """The health row and its ETag; an empty one and None when there is no row yet."""
        try:
            entity = self._table.get_entity(row_key(mailbox.lower()), HEALTH)
        except ResourceNotFoundError:
            return Health(mailbox), None
        except STORAGE_FAILURES as e:
            raise storage_error(f"read the health of {mailbox}", e, role=_ROLE) from e
        return health_from(entity), str(entity.metadata["etag"])

    def _query(self, query: str) -> list[dict[str, Any]]:
        try:
            return [dict(e) for e in self._table.query_entities(query)]
        except ResourceNotFoundError:
            return []
        except STORAGE_FAILURES as e:
            raise storage_error(f"query table '{self._table.table_name}'", e, role=_ROLE) from e

    def get_pop3_checkpoint(self, mailbox: str) -> Pop3Checkpoint | None:
        """The digests of the POP3 messages delivered from ``mailbox`` (RowKey ``pop3``)."""
        try:
            entity = self._table.get_entity(row_key(mailbox.lower()), POP3)
        except ResourceNotFoundError:
            return None
        except STORAGE_FAILURES as e:
            raise storage_error(f"read the POP3 checkpoint of {mailbox}", e, role=_ROLE) from e
        return pop3_checkpoint_from(mailbox, entity)

    def put_pop3_checkpoint(self, checkpoint: Pop3Checkpoint) -> Pop3Checkpoint:
        """Write if the stored row still has ``checkpoint.etag`` (None: only if absent).

        The sorted digests are packed into binary properties of at most 64 KiB each
        (``Delivered0``, ``Delivered1``, ...), keeping the entity under Table storage's 1 MiB.
        """
        mailbox = checkpoint.mailbox
        count = len(checkpoint.delivered)
        if count > POP3_CHECKPOINT_LIMIT:
            raise StorageError(
                f"The POP3 maildrop of {mailbox} holds {count} delivered messages; the POP3 "
                f"checkpoint can keep at most {POP3_CHECKPOINT_LIMIT} (one 1 MiB table row). "
                "Read this mailbox over IMAP (protocol imap in MAILBOXES), or have fewer "
                "messages left in its Inbox."
            )
        if any(len(d) != DIGEST_BYTES for d in checkpoint.delivered):
            raise ValueError(f"POP3 checkpoint digests must be {DIGEST_BYTES} bytes each")
        packed = b"".join(sorted(checkpoint.delivered))
        entity: dict[str, Any] = {
            "PartitionKey": row_key(mailbox.lower()),
            "RowKey": POP3,
            "Mailbox": mailbox,
            "Count": count,
            "FirstRun": checkpoint.first_run,
        }
        for index, start in enumerate(range(0, len(packed), POP3_CHUNK_BYTES)):
            entity[f"{POP3_CHUNK_PREFIX}{index}"] = packed[start:start + POP3_CHUNK_BYTES]
        # REPLACE (in _write_guarded) drops chunk properties a smaller set no longer needs.
        etag = self._write_guarded(entity, checkpoint.etag, what=f"POP3 checkpoint of {mailbox}",
                                   scope="mailbox")
        return replace(checkpoint, etag=etag)

    def _write_guarded(self, entity: dict[str, Any], etag: str | None, *, what: str,
                       scope: str) -> str:
        """Create the row (etag None) or replace it if unchanged since ``etag``; the new etag."""
        try:
            if etag is None:
                metadata = self._table.create_entity(entity)
            else:
                metadata = self._table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=etag,
                    match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError) as e:
            raise CheckpointConflict(
                f"The {what} was changed by another run; this run leaves the {scope} to it "
                "(nothing is lost: the other run continues from there)."
            ) from e
        except STORAGE_FAILURES as e:
            raise storage_error(f"write the {what}", e, role=_ROLE) from e
        return str(metadata["etag"])
