"""A poll's health row costs one read and one write on the real table: the write goes by the
row its first read saw, and reads again only when another run changed the row meanwhile."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.data.tables import TableClient

from devstack.stack import Stack
from shared.adapters.table import TableStateStore
from shared.model import FolderResult, MailboxResult

A = "rows@contoso.com"
AT = datetime(2026, 12, 1, 9, tzinfo=UTC)


class _Requests(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """The method of every request the table client sends."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        self.methods.append(request.http_request.method)


def _store(stack: Stack, table_name: str, sent: _Requests | None = None) -> TableStateStore:
    table = TableClient.from_connection_string(stack.storage_connection_string, table_name,
                                               per_call_policies=[sent] if sent else [])
    return TableStateStore(table)


def _delivered(count: int) -> MailboxResult:
    return MailboxResult(A, [FolderResult("INBOX", delivered=count)])


def _row_read_by_a_run(stack: Stack) -> tuple[str, TableStateStore, _Requests]:
    """A new table whose health row holds one delivery, read by a run's store (as a poll's
    start reads it); the table's name, that store, and the requests it sent from that read on."""
    name = f"rows{uuid.uuid4().hex[:12]}"
    sent = _Requests()
    store = _store(stack, name, sent)
    store.ensure_table()
    store.record_result(_delivered(1), at=AT)
    sent.methods.clear()
    assert store.get_health(A) is not None
    return name, store, sent


def test_a_run_reads_its_health_row_once(stack: Stack) -> None:
    _, store, sent = _row_read_by_a_run(stack)
    assert store.record_result(_delivered(2), at=AT).delivered_total == 3
    assert sent.methods == ["GET", "PUT"]


def test_a_row_changed_since_the_read_is_read_again_before_the_write(stack: Stack) -> None:
    name, store, sent = _row_read_by_a_run(stack)
    _store(stack, name).record_result(_delivered(2), at=AT)  # another run, meanwhile
    assert store.record_result(_delivered(4), at=AT).delivered_total == 7
    # The write by the stale ETag is refused; the row is read again and written over that.
    assert sent.methods == ["GET", "PUT", "GET", "PUT"]
