"""``mailferry``: the operator's command line, over the same code path as the timer."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared import mailbox_commands
from shared.action_status import pending_actions, pending_actions_table
from shared.adapters.table import TableStateStore
from shared.errors import ConfigurationError, MailferryError
from shared.first_run import describe
from shared.folder_patterns import named_folders
from shared.mailbox_list import MailboxConfig
from shared.model import MailboxResult, PollReport
from shared.report_json import poll_document, status_document
from shared.settings import Settings
from shared.throttle import when
from shared.wiring import components_for, load_settings

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
# EX_USAGE of sysexits.h: the command line itself is wrong (argparse's own 2 means bad settings here).
EXIT_USAGE = 64


def _print_json(document: object) -> None:
    # Plain print: one JSON document on stdout, never wrapped or coloured.
    print(json.dumps(document, ensure_ascii=False, indent=2))


def read_environment(settings_file: Path | None) -> dict[str, str]:
    """The process environment over the ``Values`` of local.settings.json, if there is one."""
    values: dict[str, str] = {}
    path = settings_file or Path("local.settings.json")
    if path.is_file():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigurationError([f"{path} is not valid JSON: {e}"]) from e
        values = {str(k): str(v) for k, v in (document.get("Values") or {}).items()}
    elif settings_file is not None:
        raise ConfigurationError([f"--settings {settings_file}: no such file"])
    return values | dict(os.environ)


class LiveProgress:
    """Draws one line per mailbox while a poll runs (only on a terminal)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}
        self._counts: dict[str, tuple[int, int]] = {}

    def mailbox_started(self, address: str) -> None:
        self._counts[address] = (0, 0)
        self._tasks[address] = self._progress.add_task(address, total=None, status="reading")

    def message_delivered(self, address: str, size: int) -> None:
        count, total = self._counts.get(address, (0, 0))
        self._counts[address] = (count + 1, total + size)
        self._progress.update(self._tasks[address],
                              status=f"{count + 1} messages, {_size(total + size)}")

    def mailbox_finished(self, result: MailboxResult) -> None:
        task = self._tasks.get(result.address)
        if task is None:
            task = self._tasks[result.address] = self._progress.add_task(result.address, total=None)
        status = (f"[green]done[/], {result.delivered} new" if result.ok
                  else f"[yellow]throttled[/], {result.delivered} new" if not result.failed
                  else "[red]failed[/]")
        self._progress.update(task, total=1, completed=1, status=status)


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return str(count)


def summary_table(report: PollReport) -> Table:
    """Per mailbox: new messages, bytes, seconds, status."""
    table = Table(title=f"Poll finished in {report.seconds:.1f} s")
    for column, justify in (("Mailbox", "left"), ("New", "right"), ("Size", "right"),
                            ("Seconds", "right"), ("Status", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for m in report.mailboxes:
        if m.skipped:
            status = f"[yellow]not polled[/]: {escape(m.skipped)}"
        elif m.ok:
            status = "[green]ok[/]" if m.complete else "[yellow]time box reached, resumes[/]"
            if m.acted:
                status += f" ({m.acted} acted on after delivery)"
            dupes = sum(f.duplicates_skipped for f in m.folders)
            if dupes:
                status += f" ({dupes} already delivered before a UIDVALIDITY change)"
            yielded = [f.folder for f in m.folders if f.yielded]
            if yielded:
                status += f" (left to another run: {escape(', '.join(yielded))})"
            for folder in m.folder_errors:
                status += f"\n[red]folder {escape(folder.folder)!r} failed[/]: {escape(folder.error or '')}"
        elif m.throttled_until is not None:
            status = f"[yellow]throttled until {when(m.throttled_until)}[/]: {escape(m.error or '')}"
        else:
            status = f"[red]{m.error_type}[/]: {escape(m.error or '')}"
        table.add_row(escape(m.address), str(m.delivered), _size(m.bytes_delivered),
                      f"{m.seconds:.1f}", status)
    return table


def command_poll(env: Mapping[str, str], console: Console, *, as_json: bool = False) -> int:
    components = components_for(load_settings(env))
    poller = components.poller
    mailboxes = components.mailbox_directory.list_mailboxes()
    if as_json:
        report = poller.run(mailboxes) if mailboxes else PollReport([], 0.0)
        _print_json(poll_document(report))
        return EXIT_FAILED if report.failed else EXIT_OK
    if not mailboxes:
        console.print("No mailbox is registered: add some with `mailferry mailboxes add` or "
                      "`mailferry mailboxes import`.")
        return EXIT_OK
    if console.is_terminal:
        columns = (SpinnerColumn(), TextColumn("{task.description}"),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            report = poller.run(mailboxes, LiveProgress(progress))
    else:
        report = poller.run(mailboxes)
    console.print(summary_table(report))
    return EXIT_FAILED if report.failed else EXIT_OK


def command_status(env: Mapping[str, str], console: Console, *, as_json: bool = False) -> int:
    settings = load_settings(env)
    components = components_for(settings)
    store = components.state
    if as_json:
        _print_json(status_document(store.list_checkpoints(), store.list_health()))
        return EXIT_OK
    checkpoints = Table(title="Checkpoints")
    for column in ("Mailbox", "Folder", "UIDVALIDITY", "Last UID", "First run"):
        checkpoints.add_column(column)
    started = set()
    listed = store.list_checkpoints()
    for c in sorted(listed, key=lambda c: (c.mailbox, c.folder)):
        started.add((c.mailbox.lower(), c.folder))
        checkpoints.add_row(c.mailbox, c.folder, str(c.uidvalidity), str(c.last_uid),
                            describe(c.first_run, c.not_before))
    for row in _other_folders(settings, components.mailbox_directory.list_mailboxes(), store, started):
        checkpoints.add_row(*map(escape, row))
    actions = pending_actions(components.mailbox_directory.list_mailboxes(), settings.poll.after_delivery,
                              listed, components.action_states.list_action_states())
    health = Table(title="Health")
    for column in ("Mailbox", "Last success (UTC)", "Delivered", "Failing", "Last error"):
        health.add_column(column, no_wrap=column != "Last error")
    now = datetime.now(UTC)
    for h in sorted(store.list_health(), key=lambda h: h.mailbox):
        problems = []
        if h.throttled_until is not None and h.throttled_until > now:
            since = f" (since {when(h.throttled_since)})" if h.throttled_since else ""
            problems.append(f"[yellow]throttled until {when(h.throttled_until)}[/]{since}")
        if h.folder_errors:
            problems.append(f"[red]folders failing[/]: {escape(h.folder_errors)}")
        if h.folders_gone:
            problems.append(f"[yellow]folders gone from the server[/]: {escape(h.folders_gone)}")
        if h.last_error and h.last_error_at:
            problems.append(escape(f"{h.last_error} ({h.last_error_at:%Y-%m-%d %H:%M})"))
        health.add_row(
            h.mailbox,
            f"{h.last_success_at:%Y-%m-%d %H:%M}" if h.last_success_at else "never",
            str(h.delivered_total),
            f"[red]{h.consecutive_failures} runs[/]" if h.consecutive_failures else "no",
            "\n".join(problems),
        )
    console.print(checkpoints)
    if actions:
        console.print(pending_actions_table(actions))
    console.print(health)
    return EXIT_OK


def _other_folders(settings: Settings, mailboxes: list[MailboxConfig], store: TableStateStore,
                   started: set[tuple[str, str]]) -> list[tuple[str, str, str, str, str]]:
    """POP3 maildrops, and the configured folders no poll has started yet with the scope
    their first poll will take."""
    rows = []
    for mailbox in mailboxes:
        scope = f"{mailbox.first_run or settings.poll.first_run} (when first polled)"
        if mailbox.protocol == "pop3":
            pop3 = store.get_pop3_checkpoint(mailbox.address)
            rows.append((mailbox.address, "INBOX (POP3)", "", f"{len(pop3.delivered)} in checkpoint",
                         pop3.first_run) if pop3 else
                        (mailbox.address, "INBOX (POP3)", "", "not polled yet", scope))
            continue
        rows += [(mailbox.address, folder, "", "not polled yet", scope) for folder in
                 named_folders(mailbox.folders) if (mailbox.address.lower(), folder) not in started]
    return rows


_MARKS = {"ok": "[green]✓[/]", "fail": "[red]✗[/]", "warn": "[yellow]![/]", "skip": "[dim]-[/]"}


def command_doctor(env: Mapping[str, str], console: Console, *, as_json: bool) -> int:
    from shared.doctor import run_doctor  # noqa: PLC0415 - only this command needs it

    report = run_doctor(env)
    # Settings the doctor could not read get the same exit code as on `poll` and `status`.
    settings_failed = any(s.section == "settings" and s.status == "fail" for s in report.steps)
    code = EXIT_OK if report.ok else EXIT_CONFIG if settings_failed else EXIT_FAILED
    if as_json:
        console.print_json(report.to_json())
        return code
    section = None
    for step in report.steps:
        if step.section != section:
            section = step.section
            console.print(f"\n[bold]{escape(section)}[/]")
        detail = f" [dim]{escape(step.detail)}[/]" if step.detail else ""
        console.print(f"  {_MARKS[step.status]} {escape(step.name)}{detail}")
        for fix in step.fixes:
            console.print(f"      [cyan]→[/] {escape(fix)}")
    failed = sum(s.status == "fail" for s in report.steps)
    warned = sum(s.status == "warn" for s in report.steps)
    console.print(f"\n{'[red]' + str(failed) + ' failed[/]' if failed else '[green]all good[/]'}"
                  + (f", {warned} warning(s)" if warned else ""))
    return code


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; a usage error exits with EXIT_USAGE (argparse's own 2 means bad
    settings here) once argparse has printed the usage and the error."""
    parser = argparse.ArgumentParser(prog="mailferry", description=__doc__)
    parser.add_argument("--settings", type=Path, default=None,
                        help="local.settings.json to read (default: ./local.settings.json if present)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)
    poll = commands.add_parser("poll", help="deliver new messages of every configured mailbox now")
    poll.add_argument("--json", action="store_true", help="print the result as JSON (mailferry.poll.v1)")
    status = commands.add_parser("status", help="show checkpoints and mailbox health")
    status.add_argument("--json", action="store_true",
                        help="print checkpoints and health as JSON (mailferry.status.v1)")
    doctor = commands.add_parser("doctor", help="check every step of a poll and say how to fix "
                                 "what fails")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    mailbox_commands.add_parser(commands)
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        if e.code == 2:
            raise SystemExit(EXIT_USAGE) from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mailferry`` console script."""
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = Console()
    errors = Console(stderr=True)
    try:
        env = read_environment(args.settings)
        if args.command == "poll":
            return command_poll(env, console, as_json=args.json)
        if args.command == "doctor":
            return command_doctor(env, console, as_json=args.json)
        if args.command == "mailboxes":
            return mailbox_commands.run(args, env, console)
        return command_status(env, console, as_json=args.json)
    except ConfigurationError as e:
        errors.print(f"[red]Configuration error[/]\n{escape(str(e))}", highlight=False)
        return EXIT_CONFIG
    except MailferryError as e:
        errors.print(f"[red]{type(e).__name__}[/]: {escape(str(e))}", highlight=False)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
