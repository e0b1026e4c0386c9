"""Exchange pushing back, on the real stack through the fault fronts: a throttled mailbox waits
its turn and costs the others nothing; overlapping runs never open a second connection."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from devstack.faults import FaultFront
from devstack.stack import Stack
from shared.entry import run_queue_poll, run_timer_poll
from shared.fanout import poll_message
from shared.log_texts import THROTTLED_LOG_TEXT
from shared.model import Health
from shared.naming import folder_prefix, lease_container_name
from shared.poll import FAILURE_LOG_TEXT, LEASE_SKIP, Poller, SilentObserver
from tests.integration.helpers import new_poller, run_cli, stored_blobs

pytestmark = pytest.mark.usefixtures("identity_endpoint")

THROTTLED_TEXT = "Request is throttled. Suggested Backoff Time: {ms} milliseconds"


def messages(address: str, first: int, count: int) -> list[bytes]:
    tag = address.split("@", maxsplit=1)[0]
    return [f"From: a@fabrikam.com\r\nSubject: {tag} {n}\r\nMessage-ID: <{n}.{tag}@fabrikam.example>"
            f"\r\n\r\nbody {n}\r\n".encode() for n in range(first, first + count)]


def delivered(env: dict[str, str], address: str) -> list[bytes]:
    prefix = folder_prefix(address, "INBOX")
    return sorted(raw for name, raw in stored_blobs(env).items() if name.startswith(prefix))


def health_of(poller: Poller, address: str) -> Health:
    [health] = [h for h in poller.health.list_health() if h.mailbox == address]
    return health


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(FAILURE_LOG_TEXT)]


def lines_about(caplog: pytest.LogCaptureFixture, start: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(start)]


def assert_exactly_once(stack: Stack, env: dict[str, str], poller: Poller, address: str) -> None:
    """Every message of the Inbox stored once, byte for byte, and counted once."""
    on_server = sorted(stack.server_messages(address, "INBOX").values())
    assert delivered(env, address) == on_server
    assert health_of(poller, address).delivered_total == len(on_server)


class ShiftedClock:
    """The real clock, moved forward by ``ahead``: time passing without waiting for it."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead


def test_a_throttled_mailbox_among_four_waits_its_suggested_time_and_the_others_deliver_on_time(
        stack, faults: FaultFront, new_mailbox, caplog, tmp_path):
    addresses = [new_mailbox() for _ in range(4)]
    throttled, others = addresses[0], addresses[1:]
    for address in addresses:
        stack.append_many(address, "INBOX", messages(address, 0, 20))
    env = faults.settings_env(", ".join(addresses), storage=False)
    # Long enough for two more runs and a status on a loaded machine, short enough to wait out.
    backoff = 20.0
    faults.throttle(throttled, on="AUTHENTICATE", backoff_ms=int(backoff * 1000))

    with caplog.at_level(logging.INFO):
        first = run_timer_poll(past_due=False, env=env)  # must not raise
    throttled_at = time.monotonic()
    results = {r.address: r for r in first.mailboxes}
    assert all(results[a].ok and results[a].delivered == 20 for a in others)
    assert results[throttled].throttled_until is not None and first.failed == []
    [warning] = lines_about(caplog, f"mailbox throttled: {throttled}: until ")
    assert warning.levelno == logging.WARNING and f"Suggested Backoff Time: {int(backoff * 1000)}" in warning.getMessage()
    assert failure_lines(caplog) == []

    # Two more timer runs before the suggested time: the others deliver their new mail, the
    # throttled mailbox is not even connected to.
    for run in (1, 2):
        for address in addresses:
            stack.append_many(address, "INBOX", messages(address, 20 * run, 5))
        caplog.clear()
        with caplog.at_level(logging.INFO):
            report = run_timer_poll(past_due=False, env=env)
        results = {r.address: r for r in report.mailboxes}
        assert all(results[a].ok and results[a].delivered == 5 for a in others)
        assert (results[throttled].skipped or "").startswith("throttled until ")
        assert results[throttled].delivered == 0
        [skip] = lines_about(caplog, f"mailbox skipped: {throttled}: throttled until ")
        assert skip.levelno == logging.INFO
        assert failure_lines(caplog) == [] and lines_about(caplog, "mailbox throttled") == []
        assert faults.connections(throttled).total == 1
    status = run_cli(env, "status", cwd=tmp_path)
    assert time.monotonic() < throttled_at + backoff, "the skipped runs must fall inside the back-off"
    assert status.returncode == 0, status.stderr
    assert "throttled until" in status.stdout and throttled in status.stdout

    time.sleep(max(0.0, throttled_at + backoff + 0.5 - time.monotonic()))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        last = run_timer_poll(past_due=False, env=env)
    results = {r.address: r for r in last.mailboxes}
    assert results[throttled].ok and results[throttled].delivered == 30
    assert all(results[a].ok and results[a].delivered == 0 for a in others)
    assert failure_lines(caplog) == []
    poller, _ = new_poller(env)
    for address in addresses:
        assert_exactly_once(stack, env, poller, address)
        assert faults.connections(address).peak == 1
    recovered = health_of(poller, throttled)
    assert recovered.throttled_until is None and recovered.throttled_since is None
    assert recovered.consecutive_failures == 0


def test_without_a_suggested_time_the_back_off_is_persisted_and_grows(stack, faults, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", messages(address, 0, 3))
    env = faults.settings_env(address, storage=False)
    faults.answer(address, on="AUTHENTICATE", status="NO", text="Request is throttled.", times=2)
    poller, settings = new_poller(env)
    clock = ShiftedClock()
    poller = replace(poller, clock=clock)

    [first] = poller.run(settings.mailboxes).mailboxes
    health = health_of(poller, address)
    assert first.throttled_until is not None and health.throttle_count == 1
    assert health.throttled_until == first.throttled_until
    assert health.last_attempt_at is not None and health.throttled_since == health.last_attempt_at
    since = health.throttled_since
    wait = (health.throttled_until - health.last_attempt_at).total_seconds()
    assert 60 * 0.8 <= wait <= 60 * 1.2

    clock.ahead = timedelta(seconds=30)  # still inside the back-off: skipped, no connection
    [skipped] = poller.run(settings.mailboxes).mailboxes
    assert (skipped.skipped or "").startswith("throttled until ")
    assert faults.connections(address).total == 1

    clock.ahead = timedelta(seconds=75)  # past it: polled, throttled again, waits longer
    [second] = poller.run(settings.mailboxes).mailboxes
    health = health_of(poller, address)
    assert second.throttled_until is not None and health.throttle_count == 2
    assert health.throttled_since == since  # the streak's start stays
    assert health.last_attempt_at is not None and health.throttled_until is not None
    wait = (health.throttled_until - health.last_attempt_at).total_seconds()
    assert 120 * 0.8 <= wait <= 120 * 1.2
    assert faults.connections(address).total == 2

    clock.ahead = timedelta(seconds=75 + 150)
    [third] = poller.run(settings.mailboxes).mailboxes
    health = health_of(poller, address)
    assert third.ok and third.delivered == 3
    assert (health.throttle_count, health.throttled_until, health.throttled_since) == (0, None, None)


class ArmAfter(SilentObserver):
    """Arms a fault once ``count`` messages of the mailbox are delivered (mid-run)."""

    def __init__(self, count: int, arm: Callable[[], object]) -> None:
        self.count = count
        self.arm = arm
        self.seen = 0
        self.lock = threading.Lock()

    def message_delivered(self, address: str, size: int) -> None:
        with self.lock:
            self.seen += 1
            if self.seen == self.count:
                self.arm()


@pytest.mark.parametrize("how", ["tagged NO to UID FETCH", "untagged BYE instead of a FETCH answer"])
def test_throttled_in_the_middle_of_a_fetch_keeps_what_was_delivered_and_resumes(
        stack, faults, new_mailbox, caplog, how):
    address = new_mailbox()
    stack.append_many(address, "INBOX", messages(address, 0, 40))
    env = faults.settings_env(address, storage=False) | {"FETCH_BATCH_SIZE": "5", "UPLOAD_CONCURRENCY": "2"}
    poller, settings = new_poller(env)
    text = THROTTLED_TEXT.format(ms=4000)
    observer: SilentObserver
    if how.startswith("tagged"):
        observer = ArmAfter(10, lambda: faults.answer(address, on="FETCH", status="NO", text=text))
    else:
        # Logged in, then EXAMINE, UID SEARCH, the size FETCH and three body FETCHes: the
        # fourth body FETCH gets Exchange's BYE.
        faults.bye(address, after_commands=6, on="FETCH", text=text)
        observer = SilentObserver()

    with caplog.at_level(logging.INFO):
        [result] = poller.run(settings.mailboxes, observer).mailboxes
    throttled_at = time.monotonic()
    assert result.throttled_until is not None and not result.failed, result.error
    assert 10 <= result.delivered < 40
    [checkpoint] = [c for c in poller.checkpoints.list_checkpoints() if c.mailbox == address]
    # What was delivered before the throttle stays delivered, and checkpointed.
    assert checkpoint.last_uid >= 10 and len(delivered(env, address)) >= checkpoint.last_uid
    assert failure_lines(caplog) == [] and len(lines_about(caplog, "mailbox throttled")) == 1
    assert faults.events()[0].mailbox == address

    [early] = poller.run(settings.mailboxes).mailboxes
    assert early.skipped and faults.connections(address).total == 1
    time.sleep(max(0.0, throttled_at + 4.5 - time.monotonic()))
    [rest] = poller.run(settings.mailboxes).mailboxes
    assert rest.ok and result.delivered + rest.delivered == 40
    assert_exactly_once(stack, env, poller, address)


def test_two_overlapping_inline_runs_never_open_a_second_connection_to_a_mailbox(
        stack, faults, new_mailbox, caplog):
    addresses = [new_mailbox() for _ in range(3)]
    for address in addresses:
        stack.append_many(address, "INBOX", messages(address, 0, 60))
        # The first session's first FETCH waits 2 s, so both runs are surely in flight at once.
        faults.stall(address, duration=2, on="FETCH")
    env = faults.settings_env(", ".join(addresses), storage=False) | {"FETCH_BATCH_SIZE": "5"}
    runs = [new_poller(env) for _ in range(2)]
    start = threading.Barrier(2)
    reports = []

    def run(poller: Poller, mailboxes) -> None:
        start.wait()
        reports.append(poller.run(mailboxes))

    with caplog.at_level(logging.INFO):
        threads = [threading.Thread(target=run, args=(p, s.mailboxes)) for p, s in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert len(reports) == 2 and all(r.failed == [] for r in reports)
    assert failure_lines(caplog) == []
    for address in addresses:
        assert faults.connections(address).peak == 1
        results = [m for r in reports for m in r.mailboxes if m.address == address]
        assert sum(m.delivered for m in results) == 60
        assert any((m.skipped or "").startswith(LEASE_SKIP) for m in results)
        assert_exactly_once(stack, env, runs[0][0], address)
    assert lines_about(caplog, "mailbox skipped: ")


def test_an_empty_poll_pays_two_blob_requests_per_mailbox_for_its_lease(stack, faults, new_mailbox):
    addresses = [new_mailbox() for _ in range(2)]
    env = faults.settings_env(", ".join(addresses))
    poller, settings = new_poller(env)
    poller.run(settings.mailboxes)  # creates the lease blobs and the health rows
    unleased = replace(poller, leases=None)

    def storage_requests(p: Poller) -> tuple[int, int]:
        faults.clear()
        report = p.run(settings.mailboxes)
        assert report.failed == [] and report.delivered == 0
        return faults.storage_requests("blob"), faults.storage_requests("table")

    with_lease, without = storage_requests(poller), storage_requests(unleased)
    # Acquire and release per mailbox; the health read before it is shared by both.
    assert with_lease[0] - without[0] == 2 * len(addresses)
    assert with_lease[1] == without[1]


def test_a_throttled_pop3_login_waits_its_suggested_time(stack, faults, new_mailbox, caplog):
    address = new_mailbox()
    stack.append_many(address, "INBOX", messages(address, 0, 4))
    env = faults.settings_env(address, storage=False) | {"MAIL_PROTOCOL": "pop3"}
    faults.throttle(address, on="AUTHENTICATE", backoff_ms=3000, protocol="pop3")
    poller, settings = new_poller(env)

    with caplog.at_level(logging.INFO):
        [first] = poller.run(settings.mailboxes).mailboxes
    throttled_at = time.monotonic()
    assert first.throttled_until is not None and not first.failed
    assert failure_lines(caplog) == [] and len(lines_about(caplog, "mailbox throttled")) == 1
    [skipped] = poller.run(settings.mailboxes).mailboxes
    assert (skipped.skipped or "").startswith("throttled until ")
    assert faults.connections(address, "pop3").total == 1
    time.sleep(max(0.0, throttled_at + 3.5 - time.monotonic()))
    [last] = poller.run(settings.mailboxes).mailboxes
    assert last.ok and last.delivered == 4
    assert len(delivered(env, address)) == 4 and health_of(poller, address).delivered_total == 4


def test_a_throttled_mailbox_in_fanout_completes_its_messages_without_connecting(
        stack, faults, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", messages(address, 0, 2))
    env = faults.settings_env(address, storage=False) | {"POLL_MODE": "fanout",
                                          "POLL_QUEUE": f"polls-{uuid.uuid4().hex[:12]}"}
    faults.throttle(address, on="AUTHENTICATE", backoff_ms=60_000, status="BAD", bye=True)
    # The first attempt of a message: a failure would raise so that the host retries it.
    throttled = run_queue_poll(poll_message(address), dequeue_count=1, env=env)
    assert throttled is not None and throttled.throttled_until is not None
    again = run_queue_poll(poll_message(address), dequeue_count=1, env=env)
    assert again is not None and (again.skipped or "").startswith("throttled until ")
    assert faults.connections(address).total == 1 and stored_blobs(env) == {}


def test_hours_of_throttling_log_the_failure_line_so_the_alert_fires(stack, faults, new_mailbox, caplog):
    address = new_mailbox()
    env = faults.settings_env(address, storage=False)
    faults.throttle(address, on="AUTHENTICATE", backoff_ms=600_000, times=2)
    poller, settings = new_poller(env)
    clock = ShiftedClock()
    poller = replace(poller, clock=clock)
    poller.run(settings.mailboxes)
    clock.ahead = timedelta(hours=3, minutes=1)  # throttled again at its next chance
    with caplog.at_level(logging.INFO):
        [result] = poller.run(settings.mailboxes).mailboxes
    assert result.throttled_until is not None
    [line] = failure_lines(caplog)
    assert line.startswith(f"{FAILURE_LOG_TEXT}: {address}: MailboxThrottled: throttled since ")
    caplog.clear()
    clock.ahead += timedelta(minutes=5)  # skipped, and still said, once per run
    with caplog.at_level(logging.INFO):
        [skipped] = poller.run(settings.mailboxes).mailboxes
    assert skipped.skipped and len(failure_lines(caplog)) == 1


def test_a_throttled_only_run_is_no_failure_for_the_timer_or_the_command_line(
        stack, faults, new_mailbox, tmp_path):
    address = new_mailbox()
    stack.append_many(address, "INBOX", messages(address, 0, 2))
    env = faults.settings_env(address, storage=False)
    faults.throttle(address, on="AUTHENTICATE", backoff_ms=2000)
    report = run_timer_poll(past_due=False, env=env)  # every mailbox throttled: no raise
    assert report.failed == [] and len(report.throttled) == 1
    time.sleep(2.2)
    faults.throttle(address, on="AUTHENTICATE", backoff_ms=60_000)

    by_hand = run_cli(env, "poll", cwd=tmp_path)
    assert by_hand.returncode == 0, by_hand.stderr
    assert "throttled until" in by_hand.stdout and f"{THROTTLED_LOG_TEXT}: {address}" in by_hand.stderr
    assert FAILURE_LOG_TEXT not in by_hand.stderr
    again = run_cli(env, "poll", cwd=tmp_path)
    assert again.returncode == 0 and "not polled: throttled until" in again.stdout
    assert faults.connections(address).total == 2 and stored_blobs(env) == {}


def test_a_lease_storage_cannot_grant_costs_that_mailbox_only(stack, faults, new_mailbox):
    addresses = [new_mailbox() for _ in range(2)]
    broken, fine = addresses
    for address in addresses:
        stack.append_many(address, "INBOX", messages(address, 0, 3))
    env = faults.settings_env(", ".join(addresses))
    lease_path = (f"/devstoreaccount1/{lease_container_name(env['BLOB_CONTAINER'])}/"
                  f"{broken.split('@', maxsplit=1)[0]}")
    faults.storage_reset(service="blob", path_prefix=lease_path, times=None, seconds=60)
    poller, settings = new_poller(env)
    results = {r.address: r for r in poller.run(settings.mailboxes).mailboxes}
    assert results[fine].ok and results[fine].delivered == 3
    assert results[broken].failed and "poll lease" in (results[broken].error or "")
    assert faults.connections(broken).total == 0
