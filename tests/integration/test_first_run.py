"""How much history a first poll takes (FIRST_RUN), on the real stack: Dovecot's own UID
SEARCH SINCE and internal dates set by APPEND, blobs in Azurite."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from devstack.stack import Stack
from tests.integration.helpers import poll, run_cli, stored_blobs
from tests.integration.test_pop3 import expected_pop3_blobs
from tests.integration.test_pop3 import settings_env as pop3_settings_env

pytestmark = pytest.mark.usefixtures("identity_endpoint")

CUT = datetime(2026, 6, 15, tzinfo=UTC)
EAST, WEST = timezone(timedelta(hours=5)), timezone(timedelta(hours=-5))
# Internal dates around the cut-off, in the order they are appended (UIDs not in date order),
# and whether each is on or after 15 June 2026 00:00 UTC.
AROUND_THE_CUT = [
    (datetime(2025, 11, 2, 8, 0, tzinfo=UTC), False),
    (CUT + timedelta(days=20), True),
    (CUT - timedelta(seconds=1), False),
    (CUT, True),
    (datetime(2026, 6, 15, 2, 0, tzinfo=EAST), False),  # 15 June there, 14 June 21:00 UTC
    (datetime(2026, 6, 14, 21, 0, tzinfo=WEST), True),  # 14 June there, 15 June 02:00 UTC
    (CUT + timedelta(seconds=1), True),
    (datetime(2024, 1, 1, tzinfo=UTC), False),
]


def numbered(label: str, n: int) -> bytes:
    return (f"Message-ID: <{label}-{n}@fabrikam.example>\r\nFrom: a@fabrikam.example\r\n"
            f"Subject: {label} {n}\r\n\r\n{label} message {n}\r\n").encode()


def append_at(stack: Stack, address: str, folder: str, dated: list[tuple[bytes, datetime]]) -> None:
    """APPEND with explicit internal dates, as mail that arrived at those moments."""
    with stack.imap_session(address) as conn:
        for raw, when in dated:
            typ, data = conn.append(f'"{folder}"', "", when, raw)
            assert typ == "OK", data


def history(label: str, count: int) -> list[tuple[bytes, datetime]]:
    """``count`` messages received over the past years, before any poll."""
    start = datetime(2023, 1, 1, tzinfo=UTC)
    return [(numbered(label, n), start + timedelta(hours=37 * n)) for n in range(count)]


def test_new_skips_500_messages_then_delivers_exactly_what_arrives(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [numbered("old", n) for n in range(500)])
    env = stack.settings_env(address) | {"FIRST_RUN": "new"}

    first = poll(env)
    assert first.failed == [], first.failed
    assert first.delivered == 0 and stored_blobs(env) == {}

    arrived = [numbered("new", n) for n in range(7)]
    stack.append_many(address, "INBOX", arrived)
    second = poll(env)
    assert second.failed == [] and second.delivered == 7
    assert sorted(stored_blobs(env).values()) == sorted(arrived)
    assert poll(env).delivered == 0


def test_since_delivers_exactly_the_mail_received_on_or_after_the_day_in_two_folders(
        stack, new_mailbox, tmp_path: Path):
    address = new_mailbox(folders=("Archive",))
    expected: set[bytes] = set()
    for folder in ("INBOX", "Archive"):
        dated = [(numbered(folder, n), when) for n, (when, _) in enumerate(AROUND_THE_CUT)]
        append_at(stack, address, folder, dated)
        expected |= {raw for (raw, _), (_, in_scope) in zip(dated, AROUND_THE_CUT, strict=True)
                     if in_scope}
    env = stack.settings_env(f"{address}:INBOX|Archive") | {"FIRST_RUN": "since:2026-06-15"}

    first = poll(env)
    assert first.failed == [], first.failed
    assert first.delivered == len(expected) == 8
    assert set(stored_blobs(env).values()) == expected and len(stored_blobs(env)) == 8

    # Then UIDs as usual: what arrives is delivered, even with an older date (moved in).
    later = [(numbered("later", 1), datetime(2020, 5, 5, tzinfo=UTC))]
    append_at(stack, address, "Archive", later)
    stack.append(address, "INBOX", numbered("later", 2))
    assert poll(env).delivered == 2
    assert set(stored_blobs(env).values()) == expected | {numbered("later", 1), numbered("later", 2)}

    status = run_cli(env | {"MAILBOXES": f"{address}:INBOX|Archive|Drafts"}, "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    rows = [line for line in status.stdout.splitlines() if address[:20] in line]
    assert sum("since:2026-06-15" in row and "(when first polled)" not in row for row in rows) == 2
    [drafts] = [row for row in rows if "Drafts" in row]
    assert "not polled yet" in drafts and "since:2026-06-15 (when first polled)" in drafts


def test_a_uidvalidity_reset_under_new_does_not_bring_old_mail_back(stack, new_mailbox):
    address = new_mailbox()
    old = history("old", 60)
    append_at(stack, address, "INBOX", old)
    env = stack.settings_env(address) | {"FIRST_RUN": "new"}
    assert poll(env).delivered == 0

    delivered = [numbered("new", n) for n in range(5)]
    stack.append_many(address, "INBOX", delivered)
    assert poll(env).delivered == 5
    pending = numbered("pending", 1)  # arrives after that poll, before the reset
    stack.append(address, "INBOX", pending)
    uidvalidity = stack.mailbox_status(address, "INBOX")["uidvalidity"]
    stack.set_uidvalidity(address, "INBOX", uidvalidity + 100)

    report = poll(env)
    assert report.failed == [], report.failed
    result = report.mailboxes[0].folders[0]
    assert result.resynced and result.delivered == 1 and result.duplicates_skipped == 5
    stored = sorted(stored_blobs(env).values())
    assert stored == sorted([*delivered, pending])
    assert not {raw for raw, _ in old} & set(stored)
    assert poll(env).delivered == 0


def test_pop3_new_marks_the_maildrop_delivered_and_takes_what_arrives_after(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [numbered("old", n) for n in range(40)])
    env = pop3_settings_env(stack, (address, "pop3")) | {"FIRST_RUN": "new"}
    first = poll(env)
    assert first.failed == [] and first.delivered == 0 and stored_blobs(env) == {}

    arrived = [numbered("new", n) for n in range(3)]
    stack.append_many(address, "INBOX", arrived)
    assert poll(env).delivered == 3
    everything = expected_pop3_blobs(stack, address)
    new_names = {name for name, raw in everything.items() if raw in arrived}
    assert stored_blobs(env) == {name: everything[name] for name in new_names}
    assert len(new_names) == 3 and len(everything) == 43


def test_pop3_with_a_since_setting_is_refused_before_anything_runs(stack, new_mailbox, tmp_path):
    address = new_mailbox()
    env = stack.settings_env(json.dumps([{"address": address, "protocol": "pop3"}])) | {
        "FIRST_RUN": "since:2026-06-15"}
    polled = run_cli(env, "poll", cwd=tmp_path)
    assert polled.returncode == 2
    assert "FIRST_RUN" in polled.stderr and "POP3" in polled.stderr
