"""One metrics record per mailbox per run, for dashboards and alerts.

The Functions host forwards a Python log record's message to Application Insights
(``traces``) but none of its extra fields, so the numbers travel inside the message as one
JSON object after a fixed prefix. A query reads them with
``parse_json(substring(message, strlen("mailbox metrics ")))``; the workbook and the
alerts in infra/bicep do exactly that, and a test holds their queries to this shape.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from shared.model import Health, MailboxResult

METRICS_LOG_PREFIX = "mailbox metrics "
METRICS_SCHEMA = "mailferry.metrics.v1"


def mailbox_metrics(result: MailboxResult, health: Health, *, now: datetime,
                    deadline_seconds: float) -> dict[str, Any]:
    """What one run did for one mailbox, and how the mailbox stands after it."""
    newest = result.newest_internal_date
    if newest is not None and newest.tzinfo is None:
        newest = newest.astimezone()  # IMAP libraries give internal dates as local time
    last_success = health.last_success_at
    return {
        "schema": METRICS_SCHEMA,
        "mailbox": result.address,
        "ok": result.ok,
        "error_type": result.error_type,
        "delivered": result.delivered,
        "bytes": result.bytes_delivered,
        "already_present": sum(f.already_present for f in result.folders),
        "duplicates_skipped": sum(f.duplicates_skipped for f in result.folders),
        "folder_errors": len(result.folder_errors),
        "complete": result.complete,
        "run_seconds": round(result.seconds, 3),
        "deadline_seconds": deadline_seconds,
        # Lag: how old the newest delivered message was when it landed, and how long the
        # mailbox has gone without a successful poll.
        "newest_message_age_seconds": round((now - newest).total_seconds(), 1) if newest else None,
        "seconds_since_success": round((now - last_success).total_seconds(), 1)
        if last_success else None,
        "consecutive_failures": health.consecutive_failures,
        "throttled_until": health.throttled_until.isoformat() if health.throttled_until else None,
    }


def metrics_message(metrics: dict[str, Any]) -> str:
    """The log message carrying ``metrics``."""
    return METRICS_LOG_PREFIX + json.dumps(metrics, separators=(",", ":"), sort_keys=True)
