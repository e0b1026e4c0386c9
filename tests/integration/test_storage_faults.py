"""Azure Storage on a bad day, played by the fault front in front of Azurite: a 503 burst is
retried, and an outage in the middle of a poll ends the run within its time box with an
error naming the account and what is durable; the next run completes. Nothing is lost or
stored twice."""

from __future__ import annotations

import pytest

from devstack.stack import Stack
from shared.time_box import CHECKPOINT_GRACE_SECONDS
from tests.devstack.raw_clients import message
from tests.integration.fault_runs import (
    MARGIN,
    TimedPoll,
    assert_exactly_once,
    next_run,
    scaled,
    seeded,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("identity_endpoint")

DEADLINE = 60


@pytest.mark.fault_runs
def test_a_busy_burst_and_an_outage_mid_poll_end_the_run_in_its_box_and_the_next_completes(
        stack: Stack, faults, new_mailbox):
    count = scaled(1000, 400)
    outage = scaled(60, 20)
    address = seeded(stack, new_mailbox, count)
    env = faults.settings_env(address) | {"POLL_DEADLINE_SECONDS": str(DEADLINE),
                                          "FETCH_BATCH_SIZE": "50", "UPLOAD_CONCURRENCY": "4"}
    running = TimedPoll(env).start()
    wait_until(lambda: faults.storage_requests("blob") >= count // 8, 120, "the first uploads", running)
    faults.storage_busy(service="blob", method="PUT", times=8)  # retried: costs only time
    wait_until(lambda: faults.storage_requests("blob") >= count // 3, 120, "a third of the uploads",
               running)
    faults.storage_outage(outage)
    [result] = running.wait(DEADLINE + MARGIN + 30).mailboxes
    assert running.seconds <= DEADLINE + MARGIN, running.seconds
    assert not result.ok and result.error_type == "StorageError", result.error
    error = result.error or ""
    assert f"storage account 127.0.0.1:{faults.ports.blob}" in error, error
    assert "INBOX: delivered through UID" in error and "the next run resumes there" in error
    faults.clear()  # the outage is over
    [again] = next_run(env).mailboxes
    assert again.ok and again.complete, again.error
    # An upload whose answer the outage cut may have landed: the next run finds it present.
    assert result.delivered + again.delivered <= count
    assert again.delivered + again.folders[0].already_present >= count - result.delivered
    assert_exactly_once(stack, env, address)


@pytest.mark.fault_runs
def test_uploads_that_storage_never_answers_cannot_hold_the_run(stack: Stack, faults, new_mailbox):
    address = seeded(stack, new_mailbox, 200)
    deadline = 15
    env = faults.settings_env(address) | {"POLL_DEADLINE_SECONDS": str(deadline),
                                          "FETCH_BATCH_SIZE": "20", "UPLOAD_CONCURRENCY": "4"}
    running = TimedPoll(env).start()
    wait_until(lambda: faults.storage_requests("blob") >= 40, 120, "the first uploads", running)
    # Blob writes are held far longer than the run's box (Azurite gets them afterwards).
    faults.storage_stall(service="blob", method="PUT", duration=90, times=None, seconds=90)
    [result] = running.wait(deadline + MARGIN + 60).mailboxes
    assert running.seconds <= deadline + MARGIN, running.seconds
    assert not result.ok and "still running when the run's time box ended" in (result.error or "")
    faults.clear()
    [again] = next_run(env).mailboxes
    assert again.ok and again.complete, again.error
    assert_exactly_once(stack, env, address)


def test_table_answers_cut_by_resets_are_a_storage_failure_naming_the_account(
        stack: Stack, faults, new_mailbox):
    address = seeded(stack, new_mailbox, 5)
    env = faults.settings_env(address) | {"POLL_DEADLINE_SECONDS": "60"}
    # Each table read reaches Azurite, but its answer never arrives (a reset instead).
    faults.storage_reset(service="table", method="GET", when="after", times=None, seconds=60)
    [result] = TimedPoll(env).start().wait(60 + MARGIN).mailboxes
    assert not result.ok and result.error_type == "StorageError", (result.error_type, result.error)
    error = result.error or ""
    assert "storage dropped the connection before it answered" in error, error
    assert f"storage account 127.0.0.1:{faults.ports.table}" in error, error
    faults.clear()
    [again] = next_run(env).mailboxes
    assert again.ok and again.complete, again.error
    assert_exactly_once(stack, env, address)


@pytest.mark.fault_runs
def test_table_writes_storage_never_answers_cannot_hold_the_run(stack: Stack, faults, new_mailbox):
    address = seeded(stack, new_mailbox, 5)
    deadline = 10
    env = faults.settings_env(address) | {"POLL_DEADLINE_SECONDS": str(deadline)}
    assert next_run(env).mailboxes[0].delivered == 5  # tables and container exist from here on
    stack.append_many(address, "INBOX", [message(n, lines=5) for n in range(5, 10)])
    # Checkpoint and health writes are held, then dropped; reads still answer.
    for method in ("PUT", "PATCH", "MERGE"):  # updates; POST (create table, first row) answers
        faults.storage_stall(service="table", method=method, duration=90, then="close",
                             times=None, seconds=90)
    running = TimedPoll(env).start()
    [result] = running.wait(deadline + MARGIN + 90).mailboxes
    # The checkpoint write is given up at its grace, the health row a grace after that.
    assert running.seconds <= deadline + MARGIN + CHECKPOINT_GRACE_SECONDS, running.seconds
    assert not result.ok and "did not answer before the run's time box ended" in (result.error or "")
    faults.clear()
    [again] = next_run(env).mailboxes
    assert again.ok and again.complete, again.error
    assert_exactly_once(stack, env, address)
