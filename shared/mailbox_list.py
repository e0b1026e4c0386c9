"""The MAILBOXES setting: which mailboxes to read, over which protocol, and which folders.

Two forms: ``a@x.com, b@x.com:INBOX|Archive`` (entries split on ``,`` ``;`` or new lines,
folder names trimmed), or a JSON list of addresses and ``{"address", "folders", "protocol",
"first_run"}`` objects (folder names exact, so a name that starts or ends with a space can be
given; ``first_run`` overrides the FIRST_RUN setting for that mailbox).
A folder may be listed once per mailbox; ``INBOX`` is case-insensitive in IMAP, so ``Inbox``
and ``INBOX`` are the same folder, while other names are case-sensitive. Folders may be
given by pattern (``*``, ``INBOX/*``, ``!Junk Email``; see ``shared.folder_patterns``).

In JSON, ``"after_delivery"`` overrides the AFTER_DELIVERY setting for a mailbox, and a
folder may be an object ``{"folder": "Invoices", "after_delivery": "delete"}`` to override it
for the folders that entry selects (``shared.delivery_actions``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from shared.delivery_actions import (
    EXPECTED,
    KEEP,
    POP3_KINDS,
    Action,
    ActionSyntaxError,
    parse_action,
)
from shared.error_text import quoted
from shared.folder_patterns import parse_entry, selection_problems
from shared.history_scope import FirstRunScope, parse_first_run

MailProtocol = Literal["imap", "pop3"]

_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_KEYS = ("address", "folders", "protocol", "first_run", "after_delivery")
_FOLDER_KEYS = ("folder", "after_delivery")
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "true or false", type(None): "null"}


@dataclass(frozen=True)
class MailboxConfig:
    """One mailbox to read, how, and the folders to read in it."""

    address: str
    folders: tuple[str, ...] = ("INBOX",)
    protocol: MailProtocol = "imap"
    # How much history a first poll takes; None: the FIRST_RUN setting.
    first_run: FirstRunScope | None = None
    # None: the AFTER_DELIVERY setting applies.
    after_delivery: Action | None = None
    # Folder entries (names or patterns) with an action of their own.
    folder_actions: tuple[tuple[str, Action], ...] = ()

    def action_for(self, entry: str, default: Action) -> Action:
        """The after-delivery action of the folders ``entry`` selects."""
        own = next((action for name, action in self.folder_actions if name == entry), None)
        return own or self.after_delivery or default

    def actions(self, default: Action) -> list[Action]:
        """Every action this mailbox's folder entries take."""
        return [self.action_for(entry, default) for entry in self.folders]


class MailboxListError(ValueError):
    """MAILBOXES cannot be used; ``problems`` says each thing wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class _JsonObject:
    """A JSON object with its keys in order, a repeated key kept (a dict would keep only the last)."""

    pairs: tuple[tuple[str, Any], ...]


def parse_mailboxes(value: str, *, default_protocol: MailProtocol = "imap") -> tuple[MailboxConfig, ...]:
    """Parse MAILBOXES in either form; raise MailboxListError naming every problem."""
    problems: list[str] = []
    if value.lstrip()[:1] in ("[", "{"):
        entries = _json_entries(value, default_protocol, problems)
    else:
        entries = _plain_entries(value, default_protocol, problems)
    if not entries and not problems:
        problems.append("no mailbox is listed.")
    seen: set[str] = set()
    for entry in entries:
        if not _ADDRESS.fullmatch(entry.address):
            problems.append(f"{quoted(entry.address)} is not an email address.")
            continue
        if entry.address.lower() in seen:
            problems.append(f"{entry.address} is listed twice.")
        seen.add(entry.address.lower())
        problems += _folder_problems(entry)
        if not problems:
            problems += action_problems((entry,), KEEP)
    if problems:
        raise MailboxListError(problems)
    return tuple(entries)


def _plain_entries(value: str, protocol: MailProtocol, problems: list[str]) -> list[MailboxConfig]:
    entries = []
    for part in re.split(r"[;,\n]", value):
        address, colon, folder_text = part.strip().partition(":")
        if not address and not colon:
            continue
        folders: tuple[str, ...] = ("INBOX",)
        if colon:
            names = [name.strip() for name in folder_text.split("|")]
            folders = tuple(names)
            if names == [""]:
                problems.append(f"{quoted(address.strip())} has ':' but no folder after it: list folders "
                                "separated by '|', or leave out ':' to read INBOX.")
                continue
        entries.append(MailboxConfig(address.strip(), folders, protocol))
    return entries


def _json_entries(value: str, protocol: MailProtocol, problems: list[str]) -> list[MailboxConfig]:
    try:
        items = json.loads(value, object_pairs_hook=lambda pairs: _JsonObject(tuple(pairs)))
    except json.JSONDecodeError as e:
        raise MailboxListError([f"it looks like JSON but does not parse ({e.msg} at {e.pos})."]) from e
    except RecursionError as e:
        raise MailboxListError(["its JSON is nested too deeply: give a flat list of addresses and "
                                '{"address", "folders", "protocol"} objects.']) from e
    except ValueError as e:  # e.g. a number with more digits than Python will convert
        raise MailboxListError([f"its JSON cannot be read ({quoted(str(e))})."]) from e
    if not isinstance(items, list):
        raise MailboxListError([f"its JSON is {_kind(items)}; it must be a list of addresses and "
                                '{"address", "folders", "protocol"} objects.'])
    entries = []
    for number, item in enumerate(items, 1):
        if isinstance(item, str):
            entries.append(MailboxConfig(item.strip(), ("INBOX",), protocol))
        elif isinstance(item, _JsonObject):
            entry = _json_object_entry(number, item, protocol, problems)
            if entry is not None:
                entries.append(entry)
        else:
            problems.append(f"JSON entry {number} is {_kind(item)}; each JSON entry must be an address "
                            'or an object {"address", "folders", "protocol"}.')
    return entries


def _json_object_entry(number: int, item: _JsonObject, default_protocol: MailProtocol,
                       problems: list[str]) -> MailboxConfig | None:
    fields: dict[str, Any] = {}
    before = len(problems)
    for key, field in item.pairs:
        if key in fields:
            problems.append(f"JSON entry {number} has the key {quoted(key)} twice.")
        elif key not in _KEYS:
            problems.append(f"JSON entry {number} has an unknown key {quoted(key)}; the keys are "
                            f"{', '.join(_KEYS)}.")
        fields[key] = field
    address = fields.get("address")
    if not isinstance(address, str):
        problems.append(f"JSON entry {number} has no address: each JSON entry must be an address or "
                        'an object {"address", "folders", "protocol"}.')
        return None
    who = f"JSON entry {number} ({quoted(address.strip())})"
    folders, folder_actions = _json_folders(fields.get("folders", ["INBOX"]), who, problems)
    after_delivery = _json_action(fields.get("after_delivery"), f"after_delivery of {who}", problems)
    protocol = fields.get("protocol", default_protocol)
    if not isinstance(protocol, str) or protocol.lower() not in ("imap", "pop3"):
        shown = quoted(protocol) if isinstance(protocol, str) else _kind(protocol)
        problems.append(f"protocol of {who} is {shown}, expected imap or pop3.")
    first_run = _first_run(who, fields.get("first_run"), protocol, problems)
    if len(problems) > before:
        return None
    return MailboxConfig(address.strip(), tuple(folders), "pop3" if protocol.lower() == "pop3" else "imap",
                         first_run, after_delivery, tuple(folder_actions))


def _first_run(who: str, value: Any, protocol: Any, problems: list[str]) -> FirstRunScope | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"first_run of {who} is {_kind(value)}, expected a string: all, new or "
                        "since:YYYY-MM-DD.")
        return None
    try:
        scope = parse_first_run(value)
    except ValueError as e:
        problems.append(f"first_run of {who} is {e}.")
        return None
    if scope.kind == "since" and isinstance(protocol, str) and protocol.lower() == "pop3":
        problems.append(f"first_run of {who} is {quoted(value)}, but POP3 gives no dates to choose "
                        "messages by: use all or new, or read the mailbox over IMAP.")
    return scope


def _json_folders(value: Any, who: str, problems: list[str]) -> tuple[list[str], list[tuple[str, Action]]]:
    """Folder entries, and those that carry their own action (objects {"folder", "after_delivery"})."""
    if not isinstance(value, list):
        problems.append(f"folders of {who} must be a list of folder names, e.g. [\"INBOX\", \"Archive\"].")
        return [], []
    if not value:
        problems.append(f"folders of {who} is an empty list: leave 'folders' out to read INBOX.")
    folders: list[str] = []
    actions: list[tuple[str, Action]] = []
    for item in value:
        if isinstance(item, str):
            folders.append(item)
            continue
        pairs = dict(item.pairs) if isinstance(item, _JsonObject) else {}
        name = pairs.get("folder")
        if not isinstance(name, str) or set(pairs) - set(_FOLDER_KEYS):
            problems.append(f"folders of {who} must be a list of folder names or objects "
                            '{"folder": "...", "after_delivery": "..."}, not ' + _kind(item) + ".")
            continue
        folders.append(name)
        action = _json_action(pairs.get("after_delivery"), f"after_delivery of folder {quoted(name)} "
                              f"of {who}", problems)
        if action is not None:
            actions.append((name, action))
    return folders, actions


def _json_action(value: Any, what: str, problems: list[str]) -> Action | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{what} is {_kind(value)}, expected a string: {EXPECTED}.")
        return None
    try:
        return parse_action(value.strip())
    except ActionSyntaxError as e:
        problems.append(f"{what} is {quoted(value)}: {e}.")
        return None


def _folder_problems(entry: MailboxConfig) -> list[str]:
    problems = []
    if any(not folder.strip() for folder in entry.folders):
        problems.append(f"{entry.address} has an empty folder name (a '|' too many, or \"\" in JSON).")
    seen: set[str] = set()
    for folder in (f for f in entry.folders if f.strip()):
        if any(ord(c) < 32 or ord(c) == 127 for c in folder):
            problems.append(f"folder {quoted(folder)} of {entry.address} has a control character.")
        elif any(0xD800 <= ord(c) <= 0xDFFF for c in folder):
            problems.append(f"folder {quoted(folder)} of {entry.address} is not valid Unicode (a lone "
                            "surrogate).")
        key = "INBOX" if folder.isascii() and folder.upper() == "INBOX" else folder
        if key in seen:
            problems.append(f"folder {quoted(folder)} of {entry.address} is listed twice"
                            + (" (INBOX is case-insensitive)." if key == "INBOX" else "."))
        seen.add(key)
    if entry.protocol == "pop3" and entry.folders != ("INBOX",):
        problems.append(f"{entry.address} is read over POP3, which sees the Inbox only: list no folders "
                        "for it, or read it over IMAP.")
    if entry.protocol == "imap" and all(f.strip() for f in entry.folders):
        problems += [f"folders of {entry.address}: {p}." for p in selection_problems(entry.folders)]
    return problems


def after_delivery_setting(value: str, mailboxes: tuple[MailboxConfig, ...],
                           name: str = "AFTER_DELIVERY") -> tuple[Action, list[str]]:
    """The AFTER_DELIVERY setting, and what is wrong with it for these mailboxes."""
    try:
        action = parse_action(value)
    except ActionSyntaxError as e:
        return KEEP, [f"{name} is {quoted(value)}: {e}."]
    return action, action_problems(mailboxes, action, setting=name)


def action_problems(mailboxes: tuple[MailboxConfig, ...], default: Action, *,
                    setting: str = "AFTER_DELIVERY") -> list[str]:
    """What the mailboxes' after-delivery actions cannot do: POP3 can only keep or delete, and
    a move target is never itself polled."""
    problems = []
    for mailbox in mailboxes:
        for entry in mailbox.folders:
            action = mailbox.action_for(entry, default)
            source = setting if action is default else "its after_delivery"
            if mailbox.protocol == "pop3" and action.kind not in POP3_KINDS:
                problems.append(f"{mailbox.address} is read over POP3, which can only keep or delete, but "
                                f"{source} is {action}: give it \"after_delivery\": \"keep\" or "
                                "\"delete\" in MAILBOXES, or read it over IMAP.")
            named = {parse_entry(e).path for e in mailbox.folders if parse_entry(e).kind == "name"}
            if action.kind == "move" and action.target in named:
                problems.append(f"{mailbox.address} lists {quoted(action.target or '')}, the folder "
                                f"{source} ({action}) moves mail to; a move target is never polled: "
                                "drop it from the folders or move elsewhere.")
    return sorted(set(problems), key=problems.index)


def _kind(value: object) -> str:
    if isinstance(value, _JsonObject):
        return "an object"
    return _JSON_TYPES.get(type(value), type(value).__name__)
