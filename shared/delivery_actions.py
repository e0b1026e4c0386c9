"""What to do with a message once its blob is stored (``AFTER_DELIVERY``), and what the
after-delivery phase remembers per folder.

``keep`` (read-only: EXAMINE and BODY.PEEK, no action phase at all), ``seen`` (set
``\\Seen``), ``move:<folder>`` (to that folder, created if missing) or ``delete``. POP3 can
only keep or delete. Plain data and parsing; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ActionKind = Literal["keep", "seen", "move", "delete"]
EXPECTED = "keep, seen, move:<folder> or delete"
POP3_KINDS = ("keep", "delete")
MOVE_PREFIX = "move:"


@dataclass(frozen=True)
class Action:
    """One after-delivery action; ``target`` is the folder of a move."""

    kind: ActionKind = "keep"
    target: str | None = None

    @property
    def is_keep(self) -> bool:
        return self.kind == "keep"

    def __str__(self) -> str:
        return f"{MOVE_PREFIX}{self.target}" if self.kind == "move" else self.kind


KEEP = Action()


class ActionSyntaxError(ValueError):
    """A value that is none of the actions; the message says what is expected (not the value)."""


def parse_action(text: str) -> Action:
    """The action ``text`` names (kinds in any case; a move target exactly as written)."""
    head, colon, target = text.partition(":")
    kind = head.strip().lower()
    if kind == "move" and colon:
        problem = target_problem(target)
        if problem:
            raise ActionSyntaxError(problem)
        return Action("move", target)
    if not colon and kind in ("keep", "seen", "delete"):
        return Action(kind)  # type: ignore[arg-type]  # narrowed by the test above
    if kind == "move":
        raise ActionSyntaxError("a move names its folder: write move:<folder>, e.g. move:Archive")
    raise ActionSyntaxError(f"expected {EXPECTED}")


def target_problem(target: str) -> str | None:
    """Why ``target`` cannot be a move target, or None."""
    if not target.strip():
        return "the move target is empty: write move:<folder>, e.g. move:Archive"
    if target != target.strip():
        return "the move target starts or ends with a space: write move:<folder> without spaces around"
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        return "the move target has a control character"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in target):
        return "the move target is not valid Unicode (a lone surrogate)"
    if "*" in target or "%" in target:
        return "the move target is a folder name, not a pattern (no '*' or '%')"
    return None


@dataclass(frozen=True)
class ActionState:
    """How far the after-delivery phase has acted in one folder (a row beside the checkpoint).

    Every message at or below ``acted_through_uid`` that was in the folder when the phase ran
    has been acted on, or was left because it had no blob. The ``copy_*`` fields are the
    journal of a move without MOVE: the batch being copied, and the target's UIDVALIDITY and
    UIDNEXT just before the COPY, so a run that dies between COPY and EXPUNGE is repaired
    without copying twice. ``etag`` is the store's version of the row.
    """

    mailbox: str
    folder: str
    uidvalidity: int
    acted_through_uid: int = 0
    # Messages the last phase could not act on: left for the time box, or without a blob.
    pending: int = 0
    without_blob: int = 0
    copy_uids: tuple[int, ...] = ()
    copy_target: str | None = None
    copy_target_uidvalidity: int = 0
    copy_target_uidnext: int = 0
    etag: str | None = None


@dataclass(frozen=True)
class KnownFolders:
    """The folders a mailbox's patterns resolved to last run, and those gone since (with the
    time each was first missed), to note a folder that disappears."""

    mailbox: str
    folders: tuple[str, ...] = ()
    gone: tuple[tuple[str, datetime], ...] = ()
