"""``mailferry mailboxes``: the mailbox registry (MAILBOXES_SOURCE=table) from the command line."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.errors import ConfigurationError
from shared.mailbox_list import MailboxConfig, MailboxListError, parse_mailboxes
from shared.wiring import components_for, load_settings

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``mailboxes`` command and its sub-commands."""
    parser = commands.add_parser("mailboxes", help="list or change the mailbox registry "
                                 "(MAILBOXES_SOURCE=table)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="every registered mailbox")
    add = verbs.add_parser("add", help="register a mailbox, or change one")
    add.add_argument("address")
    add.add_argument("--folders", default="INBOX", help="folders separated by '|' (default INBOX)")
    add.add_argument("--protocol", choices=("imap", "pop3"), default="imap")
    remove = verbs.add_parser("remove", help="unregister a mailbox (its checkpoints stay)")
    remove.add_argument("address")
    load = verbs.add_parser("import", help="register every mailbox of a CSV file: address, "
                            "folders (separated by '|'), protocol; a header row is optional")
    load.add_argument("file", type=Path)


def run(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    """Carry out one ``mailboxes`` sub-command."""
    registry = components_for(load_settings(env)).mailbox_registry
    if args.verb == "list":
        table = Table(title="Registered mailboxes")
        for column in ("Mailbox", "Folders", "Protocol"):
            table.add_column(column)
        mailboxes = registry.list_mailboxes()
        for mailbox in mailboxes:
            table.add_row(escape(mailbox.address), escape(" | ".join(mailbox.folders)), mailbox.protocol)
        console.print(table)
        console.print(f"{len(mailboxes)} mailbox(es)")
        return EXIT_OK
    if args.verb == "add":
        entry = {"address": args.address, "folders": args.folders.split("|"), "protocol": args.protocol}
        [mailbox] = _validated([(1, entry)], source="the arguments")
        registry.upsert_mailboxes([mailbox])
        console.print(f"registered {escape(mailbox.address)}")
        return EXIT_OK
    if args.verb == "remove":
        if registry.delete_mailbox(args.address):
            console.print(f"unregistered {escape(args.address)}")
            return EXIT_OK
        console.print(f"{escape(args.address)} is not registered")
        return EXIT_FAILED
    mailboxes = read_csv(args.file)
    count = registry.upsert_mailboxes(mailboxes)
    console.print(f"registered {count} mailbox(es) from {escape(str(args.file))}")
    return EXIT_OK


def read_csv(path: Path) -> list[MailboxConfig]:
    """Every mailbox of a CSV file, validated like MAILBOXES; every bad row named at once."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigurationError([f"{path}: cannot be read as CSV ({e})."]) from e
    entries: list[tuple[int, dict[str, object]]] = []
    for number, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells) or (number == 1 and cells[0].lower() == "address"):
            continue
        folders = cells[1] if len(cells) > 1 and cells[1] else "INBOX"
        entries.append((number, {"address": cells[0], "folders": folders.split("|"),
                                 "protocol": (cells[2] if len(cells) > 2 and cells[2] else "imap").lower()}))
    if not entries:
        raise ConfigurationError([f"{path}: lists no mailbox."])
    return _validated(entries, source=str(path))


def _validated(entries: list[tuple[int, dict[str, object]]], *, source: str) -> list[MailboxConfig]:
    problems: list[str] = []
    mailboxes: list[MailboxConfig] = []
    seen: dict[str, int] = {}
    for number, entry in entries:
        try:
            [mailbox] = parse_mailboxes(json.dumps([entry]))
        except MailboxListError as e:
            problems.append(f"{source} line {number}: {' '.join(e.problems)}")
            continue
        key = mailbox.address.lower()
        if key in seen:
            problems.append(f"{source} line {number}: {mailbox.address} is listed twice "
                            f"(first on line {seen[key]}).")
            continue
        seen[key] = number
        mailboxes.append(mailbox)
    if problems:
        raise ConfigurationError(problems)
    return mailboxes
