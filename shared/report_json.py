"""The JSON forms of ``mailferry poll --json`` and ``mailferry status --json`` (docs/command-line.md).

Each document names its schema (``mailferry.poll.v1``, ``mailferry.status.v1``); fields are
only ever added within a version. Times are ISO 8601 in UTC, or null.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from shared.model import Checkpoint, FolderResult, Health, MailboxResult, PollReport

POLL_SCHEMA = "mailferry.poll.v1"
STATUS_SCHEMA = "mailferry.status.v1"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _folder(folder: FolderResult) -> dict[str, Any]:
    data = asdict(folder)
    data["newest_internal_date"] = _time(folder.newest_internal_date)
    return data


def _mailbox(result: MailboxResult) -> dict[str, Any]:
    return {
        "address": result.address,
        "ok": result.ok,
        "complete": result.complete,
        "skipped": result.skipped,
        "delivered": result.delivered,
        "bytes_delivered": result.bytes_delivered,
        "seconds": round(result.seconds, 3),
        "error_type": result.error_type,
        "error": result.error,
        "folders": [_folder(f) for f in result.folders],
    }


def poll_document(report: PollReport) -> dict[str, Any]:
    """What one poll did, per mailbox and folder."""
    return {
        "schema": POLL_SCHEMA,
        "ok": not report.failed,
        "seconds": round(report.seconds, 3),
        "delivered": report.delivered,
        "failed": [m.address for m in report.failed],
        "mailboxes": [_mailbox(m) for m in report.mailboxes],
    }


def status_document(checkpoints: list[Checkpoint], health: list[Health]) -> dict[str, Any]:
    """Every folder's checkpoint and every mailbox's health row."""
    ordered = sorted(checkpoints, key=lambda c: (c.mailbox, c.folder))
    return {
        "schema": STATUS_SCHEMA,
        # The store's etag is its own concern, not the folder's state.
        "checkpoints": [{k: v for k, v in _plain(c).items() if k != "etag"} for c in ordered],
        "health": [_plain(h) for h in sorted(health, key=lambda h: h.mailbox)],
    }


def _plain(row: Checkpoint | Health) -> dict[str, Any]:
    return {key: _time(value) if isinstance(value, datetime) else value for key, value in asdict(row).items()}


__all__ = ["POLL_SCHEMA", "STATUS_SCHEMA", "poll_document", "status_document"]
