"""The workbook's and the alerts' queries read the metrics record as shared/metrics.py writes it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from shared.metrics import METRICS_LOG_PREFIX, mailbox_metrics
from shared.model import FolderResult, Health, MailboxResult

BICEP = Path(__file__).resolve().parents[1] / "infra" / "bicep"
QUERY = BICEP / "queries" / "mailbox-metrics.kql"


def record_fields() -> set[str]:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    result = MailboxResult("ops@contoso.com", [FolderResult("INBOX", delivered=1)])
    return set(mailbox_metrics(result, Health("ops@contoso.com"), now=now, deadline_seconds=480))


def test_the_query_reads_the_prefix_the_code_writes():
    text = QUERY.read_text()
    assert f'startswith "{METRICS_LOG_PREFIX}"' in text
    assert f'strlen("{METRICS_LOG_PREFIX}")' in text


def test_every_field_the_query_reads_is_in_the_record_and_none_is_left_unread():
    read = set(re.findall(r"\bm\.(\w+)", QUERY.read_text()))
    assert read <= record_fields(), read - record_fields()
    unread = record_fields() - read - {"schema", "already_present", "duplicates_skipped"}
    assert not unread, f"fields no chart or alert reads: {unread}"


def test_the_workbook_and_lag_alert_build_on_that_query_and_only_on_its_columns():
    dashboard = (BICEP / "modules" / "dashboard.bicep").read_text()
    assert "loadTextContent('../queries/mailbox-metrics.kql')" in dashboard
    columns = set(re.findall(r"(\w+) = ", QUERY.read_text())) - {"m"}
    queries = re.findall(r"^var \w+Query = '\$\{metrics\}(.*)'$", dashboard, re.M)
    assert len(queries) == 7
    for query in queries:
        tail = re.sub(r'"[^"]*"', "", re.sub(r"\$\{[^}]*\}", "0", query)).replace("\\n", " ")
        made_here = set(re.findall(r"(\w+) = ", tail))
        # camelCase names are columns (KQL's own functions and operators are lower case).
        read = {name for name in re.findall(r"\b([a-z]+[A-Z]\w*)\b", tail)}
        assert read <= columns | made_here, read - columns - made_here
