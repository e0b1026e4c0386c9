"""The first-run scope: how much of a folder's existing mail its first poll takes.

``all`` takes everything; ``new`` only what arrives after the first poll; ``since:YYYY-MM-DD``
what the server received on or after that day (from 00:00 UTC), by internal date. The text
form is what FIRST_RUN and a MAILBOXES entry's ``first_run`` hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

from shared.error_text import quoted

ScopeKind = Literal["all", "new", "since"]

EXPECTED = "all, new or since:YYYY-MM-DD (e.g. since:2026-01-01)"
# IMAP dates start in 1970 for every server in practice, and the day before the earliest
# one must still be a date (SEARCH SINCE is asked a day early).
_EARLIEST = date(1970, 1, 1)
_SINCE = re.compile(r"since:(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class FirstRunScope:
    """Which of a folder's messages a first poll delivers; ``since`` is set for kind since."""

    kind: ScopeKind = "all"
    since: date | None = None

    def __str__(self) -> str:
        return f"since:{self.since.isoformat()}" if self.since is not None else self.kind

    @property
    def cutoff(self) -> datetime | None:
        """The earliest internal date a since scope takes (its day at 00:00 UTC)."""
        if self.since is None:
            return None
        return datetime(self.since.year, self.since.month, self.since.day, tzinfo=UTC)


ALL = FirstRunScope("all")
NEW = FirstRunScope("new")


def parse_first_run(text: str) -> FirstRunScope:
    """The scope a setting's text names; ValueError says what was expected."""
    value = text.strip().lower()
    if value in ("all", "new"):
        return ALL if value == "all" else NEW
    match = _SINCE.fullmatch(value.replace(" ", ""))
    if match is None:
        raise ValueError(f"{quoted(text)}, expected {EXPECTED}")
    try:
        day = date.fromisoformat(match.group(1))
    except ValueError as e:
        raise ValueError(f"{quoted(text)}: {match.group(1)} is not a date; expected "
                         "since:YYYY-MM-DD") from e
    if day < _EARLIEST:
        raise ValueError(f"{quoted(text)}: give a day from {_EARLIEST.isoformat()} on")
    return FirstRunScope("since", day)


__all__ = ["ALL", "EXPECTED", "NEW", "FirstRunScope", "parse_first_run"]
