"""Overlapping runs and a bad folder on the real stack: each costs nothing but a delay."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from shared.adapters.table import TableStateStore
from shared.model import FolderResult, MailboxResult
from shared.poll import FAILURE_LOG_TEXT, FOLDER_FAILURE_LOG_TEXT
from tests.integration.helpers import cli_command, cli_environment, new_poller, poll, run_cli, stored_blobs

pytestmark = pytest.mark.usefixtures("identity_endpoint")


def numbered(n: int) -> bytes:
    return (f"From: a@fabrikam.com\r\nSubject: m{n}\r\nMessage-ID: <m{n}-overlap@fabrikam.example>\r\n"
            f"\r\nbody {n}\r\n").encode()


def test_four_overlapping_polls_deliver_once_report_no_failure_and_count_right(stack, new_mailbox, tmp_path):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n) for n in range(300)))
    env = stack.settings_env(address) | {"FETCH_BATCH_SIZE": "5", "UPLOAD_CONCURRENCY": "2"}
    runs = [subprocess.Popen(cli_command("poll"), env=cli_environment(env), cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)]
    outputs = [run.communicate(timeout=240) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert FAILURE_LOG_TEXT not in err and "CheckpointConflict" not in err, err
        assert run.returncode == 0, err
    assert len(stored_blobs(env)) == 300
    poller, _ = new_poller(env)
    [health] = [h for h in poller.health.list_health() if h.mailbox == address]
    # Each blob was created by exactly one run, and every run's count reached the row.
    assert health.delivered_total == 300
    assert health.consecutive_failures == 0


def test_health_counters_survive_concurrent_writers(stack, new_mailbox):
    address = new_mailbox()
    poller, _ = new_poller(stack.settings_env(address))
    store = poller.health
    assert isinstance(store, TableStateStore)

    def record(_: int) -> None:
        store.record_result(MailboxResult(address, [FolderResult("INBOX", delivered=1)]),
                            at=datetime.now(UTC))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(record, range(40)))
    [health] = [h for h in store.list_health() if h.mailbox == address]
    assert health.delivered_total == 40


def test_a_missing_folder_is_reported_and_the_folders_after_it_are_still_polled(stack, new_mailbox, tmp_path):
    address = new_mailbox(folders=("Archive",))
    stack.append(address, "INBOX", numbered(1))
    stack.append(address, "Archive", numbered(2))
    env = stack.settings_env(f"{address}:INBOX|Does Not Exist|Archive")
    for _ in range(2):
        [result] = poll(env).mailboxes
        assert result.ok
        [bad] = result.folder_errors
        assert bad.folder == "Does Not Exist"
        assert "Check the folder names in MAILBOXES" in (bad.error or "")
    assert len(stored_blobs(env)) == 2
    status = run_cli(env, "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "Does Not Exist" in status.stdout
    polled = run_cli(env, "poll", cwd=tmp_path)
    assert FOLDER_FAILURE_LOG_TEXT in polled.stderr and FAILURE_LOG_TEXT + ":" not in polled.stderr
    assert "Does Not Exist" in polled.stdout
