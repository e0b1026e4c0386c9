"""Exchange on a bad day, played by the fault front in front of the real Dovecot and Azurite:
drops and resets mid-FETCH are survived within the run, and no stall or trickle holds a run
past its time box."""

from __future__ import annotations

import time

import pytest

from devstack.faults import FaultFront
from devstack.stack import Stack
from tests.devstack.raw_clients import message
from tests.integration.fault_runs import MARGIN, assert_exactly_once, seeded
from tests.integration.helpers import poll, stored_blobs

pytestmark = pytest.mark.usefixtures("identity_endpoint")


@pytest.mark.parametrize("fault", ["reset", "bye"])
def test_a_connection_cut_in_the_middle_of_a_fetch_is_reopened_and_the_run_completes(
        stack: Stack, faults: FaultFront, new_mailbox, fault):
    address = seeded(stack, new_mailbox, 200)
    env = faults.settings_env(address, storage=False) | {"FETCH_BATCH_SIZE": "100"}
    if fault == "reset":
        faults.reset(address, on="FETCH", in_literal=True, at_byte=60_000, times=2)
    else:
        faults.bye(address, on="FETCH", in_literal=True, at_byte=90_000, times=2)
    [result] = poll(env).mailboxes
    assert result.ok and result.complete and result.delivered == 200, result.error
    assert len(faults.events(mailbox=address)) == 2
    connections = faults.connections(address)
    assert connections.total == 3  # two reopened in the same run
    assert connections.peak == 1  # each reopened only once the dropped one was closed
    assert_exactly_once(stack, env, address)


def test_a_large_message_cut_while_streamed_is_stored_whole_once_after_the_reconnect(
        stack: Stack, faults: FaultFront, new_mailbox):
    address = new_mailbox()
    big = message(1, lines=90_000)  # about 6 MiB: streamed in two ranges
    stack.append_many(address, "INBOX", [message(0), big, message(2)])
    env = faults.settings_env(address, storage=False) | {"LARGE_MESSAGE_BYTES": str(1024 * 1024)}
    faults.reset(address, on="FETCH", in_literal=True, at_byte=2 * 1024 * 1024, times=1)
    [result] = poll(env).mailboxes
    assert result.ok and result.delivered == 3, result.error
    assert faults.connections(address).total == 2
    assert_exactly_once(stack, env, address)


def test_a_pop3_connection_cut_in_the_middle_of_a_message_is_reopened_and_the_run_completes(
        stack: Stack, faults: FaultFront, new_mailbox):
    address = seeded(stack, new_mailbox, 120)
    env = faults.settings_env(address, storage=False) | {"MAIL_PROTOCOL": "pop3"}
    faults.reset(address, on="RETR", in_literal=True, at_byte=700, times=2, protocol="pop3")
    [result] = poll(env).mailboxes
    assert result.ok and result.complete and result.delivered == 120, result.error
    assert faults.connections(address, "pop3").total == 3
    assert len(stored_blobs(env)) == 120
    assert sorted(stored_blobs(env).values()) == sorted(stack.server_messages(address, "INBOX").values())


def test_a_trickling_server_cannot_hold_the_run_past_its_time_box(stack, faults, new_mailbox):
    address = seeded(stack, new_mailbox, 50)
    env = faults.settings_env(address, storage=False) | {"POLL_DEADLINE_SECONDS": "10"}
    faults.trickle(address, on="FETCH", in_literal=True, at_byte=20_000, interval=2.0,
                   duration=600, times=None, seconds=120)
    started = time.monotonic()
    [result] = poll(env).mailboxes
    took = time.monotonic() - started
    assert took <= 10 + MARGIN, took
    assert not result.ok and "time box" in (result.error or ""), result.error
    assert "INBOX: delivered through UID" in (result.error or "")
    assert "the next run resumes there" in (result.error or "")
    faults.clear()
    [again] = poll(env).mailboxes
    assert again.ok and again.complete
    assert_exactly_once(stack, env, address)


def test_a_stall_longer_than_the_time_box_ends_the_run_on_time_with_a_clear_error(
        stack, faults, new_mailbox):
    address = seeded(stack, new_mailbox, 30)
    env = faults.settings_env(address, storage=False) | {"POLL_DEADLINE_SECONDS": "10"}
    faults.stall(address, on="FETCH", in_literal=True, at_byte=10_000, duration=120, times=None,
                 seconds=120)
    started = time.monotonic()
    [result] = poll(env).mailboxes
    took = time.monotonic() - started
    assert took <= 10 + MARGIN, took
    assert not result.ok, result
    assert "share of the run's time box ran out" in (result.error or ""), result.error
    faults.clear()
    assert poll(env).mailboxes[0].complete
    assert_exactly_once(stack, env, address)


def test_a_slow_mailbox_does_not_starve_the_others(stack, faults, new_mailbox):
    slow = seeded(stack, new_mailbox, 20)
    others = [seeded(stack, new_mailbox, 20) for _ in range(3)]
    env = faults.settings_env("; ".join([slow, *others]), storage=False) | {
        "POLL_DEADLINE_SECONDS": "40", "MAX_CONCURRENT_MAILBOXES": "1"}
    faults.trickle(slow, on="FETCH", in_literal=True, at_byte=5_000, interval=2.0, duration=600,
                   times=None, seconds=120)
    started = time.monotonic()
    report = poll(env)
    took = time.monotonic() - started
    by_address = {m.address: m for m in report.mailboxes}
    assert took <= 40 + MARGIN, took
    assert [by_address[a].delivered for a in others] == [20, 20, 20]
    assert not by_address[slow].ok
