"""The mailbox registry: the mailboxes to poll, one Table row each, for deployments with more
mailboxes than an app setting can hold (``MAILBOXES_SOURCE=table``).

Rows live in the checkpoint table under PartitionKey ``mailboxes`` (no address can be that
key: addresses hold an ``@``); RowKey is the lower-cased address, percent-encoded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import (
    ResourceNotFoundError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.data.tables import TableClient, TransactionOperation, UpdateMode

from shared.adapters.storage_errors import STORAGE_FAILURES, create_table_if_missing, storage_error
from shared.mailbox_list import MailboxConfig, parse_mailboxes

_ROLE = "Storage Table Data Contributor"
PARTITION = "mailboxes"
# Table storage takes at most 100 operations in one transaction (one partition).
_BATCH = 100


def _row_key(address: str) -> str:
    return quote(address.strip().lower(), safe="@.+-_")


class TableMailboxRegistry:
    """Lists, reads and changes the registered mailboxes."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def list_mailboxes(self) -> list[MailboxConfig]:
        """Every registered mailbox, in address order."""
        try:
            rows = list(self._table.query_entities(f"PartitionKey eq '{PARTITION}'"))
        except ResourceNotFoundError:
            return []
        except STORAGE_FAILURES as e:
            raise storage_error("list the registered mailboxes", e, role=_ROLE) from e
        return sorted((_mailbox(row) for row in rows), key=lambda m: m.address.lower())

    def get_mailbox(self, address: str) -> MailboxConfig | None:
        """The registered mailbox of this address (any case), or None."""
        try:
            return _mailbox(self._table.get_entity(PARTITION, _row_key(address)))
        except ResourceNotFoundError:
            return None
        except STORAGE_FAILURES as e:
            raise storage_error(f"read the registered mailbox {address}", e, role=_ROLE) from e

    def upsert_mailboxes(self, mailboxes: Iterable[MailboxConfig]) -> int:
        """Register or update mailboxes, 100 to a transaction; the number written."""
        self._ensure_table()
        operations = [(TransactionOperation.UPSERT, _row(m), {"mode": UpdateMode.REPLACE})
                      for m in mailboxes]
        try:
            for start in range(0, len(operations), _BATCH):
                self._submit(operations[start:start + _BATCH])
        except STORAGE_FAILURES as e:
            raise storage_error("register mailboxes", e, role=_ROLE) from e
        return len(operations)

    def _submit(self, operations: list[Any]) -> None:
        # The SDK's retry does not send a POST again once the connection dropped before the
        # answer (a pooled connection storage closed just as the request went out fails so).
        # A transaction of upserts is safe to send twice, so it is sent again once; a timeout
        # is not, as that would double the wait.
        try:
            self._table.submit_transaction(operations)
        except ServiceResponseTimeoutError:
            raise
        except ServiceResponseError:
            self._table.submit_transaction(operations)

    def delete_mailbox(self, address: str) -> bool:
        """Unregister a mailbox; False when it was not registered. Its checkpoints stay."""
        if self.get_mailbox(address) is None:
            return False
        try:
            self._table.delete_entity(PARTITION, _row_key(address))
        except STORAGE_FAILURES as e:
            raise storage_error(f"unregister {address}", e, role=_ROLE) from e
        return True

    def _ensure_table(self) -> None:
        create_table_if_missing(self._table, role=_ROLE)


def _row(mailbox: MailboxConfig) -> dict[str, Any]:
    return {"PartitionKey": PARTITION, "RowKey": _row_key(mailbox.address),
            "Address": mailbox.address, "Folders": json.dumps(list(mailbox.folders)),
            "Protocol": mailbox.protocol}


def _mailbox(row: Any) -> MailboxConfig:
    # Read back through the same validation as the MAILBOXES setting.
    entry = {"address": row["Address"], "folders": json.loads(row.get("Folders") or '["INBOX"]'),
             "protocol": row.get("Protocol") or "imap"}
    [mailbox] = parse_mailboxes(json.dumps([entry]))
    return mailbox
