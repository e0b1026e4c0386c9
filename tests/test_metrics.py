"""The per-mailbox metrics record: its shape is what the workbook and the alerts query."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from shared.metrics import METRICS_LOG_PREFIX, METRICS_SCHEMA
from shared.poll import Poller, PollOptions
from shared.settings import MailboxConfig
from tests.fakes import FakeClock, FakeServer, FakeSink, FakeStateStore, FakeTokens

A, B = "ops@contoso.com", "refused@contoso.com"


def metrics_records(caplog: pytest.LogCaptureFixture) -> dict[str, dict[str, Any]]:
    found = {}
    for record in caplog.records:
        message = record.getMessage()
        if record.name == "mailferry.metrics" and message.startswith(METRICS_LOG_PREFIX):
            payload = json.loads(message[len(METRICS_LOG_PREFIX):])
            found[payload["mailbox"]] = payload
    return found


def test_each_mailbox_gets_one_metrics_record_per_run(caplog):
    server, sink, state = FakeServer(), FakeSink(), FakeStateStore()
    server.folder(A).append(b"Subject: one\r\n\r\nbody\r\n")
    server.folder(A).append(b"Subject: two\r\n\r\nbody body\r\n")
    server.folder(B)
    server.refused.add(B)
    poller = Poller(FakeTokens(), server, sink, state, state, PollOptions(deadline_seconds=300),
                    FakeClock())
    with caplog.at_level(logging.INFO, logger="mailferry.metrics"):
        poller.run([MailboxConfig(A), MailboxConfig(B)])
    records = metrics_records(caplog)
    assert set(records) == {A, B}
    good, bad = records[A], records[B]
    assert good["schema"] == METRICS_SCHEMA
    assert good["ok"] is True and good["delivered"] == 2 and good["bytes"] > 0
    assert good["deadline_seconds"] == 300 and good["complete"] is True
    assert good["seconds_since_success"] == 0 and good["consecutive_failures"] == 0
    assert good["newest_message_age_seconds"] is not None
    assert bad["ok"] is False and bad["error_type"] == "AuthenticationError"
    assert bad["seconds_since_success"] is None and bad["consecutive_failures"] == 1


def test_a_naive_internal_date_is_read_as_local_time():
    from datetime import UTC, datetime, timedelta

    from shared.metrics import mailbox_metrics
    from shared.model import FolderResult, Health, MailboxResult

    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    local = (now - timedelta(minutes=5)).astimezone().replace(tzinfo=None)
    result = MailboxResult(A, [FolderResult("INBOX", delivered=1, newest_internal_date=local)])
    record = mailbox_metrics(result, Health(A), now=now, deadline_seconds=1)
    assert record["newest_message_age_seconds"] == 300
