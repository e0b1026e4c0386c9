"""Throttled mailboxes and per-mailbox leases, in the poll core against in-memory ports."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from datetime import timedelta

import pytest

from shared.errors import StorageError
from shared.fanout import Outcome, QueueWorker, outcome_of, poll_message
from shared.log_texts import FAILURE_LOG_TEXT, SKIPPED_LOG_TEXT, THROTTLED_LOG_TEXT
from shared.metrics import METRICS_LOG_PREFIX
from shared.model import Checkpoint, Health, MailboxResult
from shared.poll import LEASE_SKIP, Poller, PollOptions
from shared.settings import MailboxConfig
from shared.throttle import ALERT_AFTER, BACKOFF_CAP, SUGGESTED_CAP, not_before
from tests.fakes import (
    FakeClock,
    FakeLeaseStore,
    FakePop3Server,
    FakeServer,
    FakeSink,
    FakeStateStore,
    FakeTokens,
    throttled,
)

A, B, C = "ops@contoso.com", "billing@contoso.com", "hr@contoso.com"
NOW = FakeClock().now()


def seeded(seed: int) -> random.Random:
    """Jitter that repeats run after run (not for security)."""
    return random.Random(seed)  # noqa: S311


def message(n: int) -> bytes:
    return f"Message-ID: <t{n}@contoso.com>\r\nSubject: s{n}\r\n\r\nbody {n}\r\n".encode()


class World:
    def __init__(self, *, leases: FakeLeaseStore | None = None) -> None:
        self.server, self.sink, self.state = FakeServer(), FakeSink(), FakeStateStore()
        self.pop3 = FakePop3Server()
        self.tokens, self.clock, self.leases = FakeTokens(), FakeClock(), leases
        self.poller = Poller(self.tokens, self.server, self.sink, self.state, self.state,
                             PollOptions(fetch_batch_size=2, upload_concurrency=2), self.clock,
                             pop3=self.pop3, pop3_checkpoints=self.state, leases=leases,
                             jitter=seeded(7))

    def fill(self, address: str, count: int, first: int = 0) -> None:
        for n in range(first, first + count):
            self.server.folder(address).append(message(n))

    def run(self, *addresses: str) -> dict[str, MailboxResult]:
        report = self.poller.run([MailboxConfig(a) for a in addresses])
        return {r.address: r for r in report.mailboxes}


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(text + ": ")]


# -- when to try again -----------------------------------------------------------------------

def test_the_servers_suggested_time_is_kept_exactly():
    assert not_before(Health(A), 299.961, now=NOW, rng=seeded(1)) == NOW + timedelta(
        seconds=299.961)
    assert not_before(Health(A), 0.0, now=NOW, rng=seeded(1)) == NOW


def test_a_suggested_time_beyond_a_day_is_cut_to_a_day():
    assert not_before(Health(A), 10**9, now=NOW, rng=seeded(1)) == NOW + SUGGESTED_CAP


def test_without_a_suggested_time_the_wait_doubles_from_a_minute_to_an_hour_with_jitter():
    rng = seeded(3)
    for count, step in enumerate([60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]):
        wait = (not_before(Health(A, throttle_count=count), None, now=NOW, rng=rng) - NOW)
        assert step * 0.8 <= wait.total_seconds() <= min(step * 1.2, BACKOFF_CAP.total_seconds())
    # Mailboxes throttled together come back at different times.
    draws = {not_before(Health(A), None, now=NOW, rng=rng) for _ in range(20)}
    assert len(draws) == 20


# -- the poll --------------------------------------------------------------------------------

def test_a_throttled_mailbox_waits_its_time_and_the_others_deliver(caplog):
    world = World()
    for address in (A, B, C):
        world.fill(address, 3)
    world.server.refuse(A, throttled(30))
    with caplog.at_level(logging.INFO):
        report = world.poller.run([MailboxConfig(A), MailboxConfig(B), MailboxConfig(C)])
    first = {r.address: r for r in report.mailboxes}
    assert first[B].delivered == first[C].delivered == 3
    assert first[A].throttled_until == NOW + timedelta(seconds=30) and not first[A].failed
    assert report.failed == [] and report.throttled == [first[A]]
    [warning] = lines(caplog, f"{THROTTLED_LOG_TEXT}: {A}")
    assert warning.levelno == logging.WARNING and "until 2026-11-28 00:00:30 UTC" in warning.getMessage()
    assert lines(caplog, FAILURE_LOG_TEXT) == []
    health = world.state.health[A]
    assert (health.throttled_until, health.throttled_since, health.throttle_count) == (
        NOW + timedelta(seconds=30), NOW, 1)
    assert health.consecutive_failures == 0 and "Request is throttled" in (health.last_error or "")
    [metrics] = [json.loads(r.getMessage()[len(METRICS_LOG_PREFIX):]) for r in caplog.records
                 if r.getMessage().startswith(METRICS_LOG_PREFIX) and A in r.getMessage()]
    assert metrics["throttled_until"] == "2026-11-28T00:00:30+00:00" and metrics["error_type"] == (
        "MailboxThrottled")


def test_inside_its_wait_a_mailbox_is_skipped_without_a_token_or_a_login(caplog):
    world = World()
    world.fill(A, 2)
    world.server.refuse(A, throttled(30))
    world.run(A)
    sessions, tokens, health = len(world.server.sessions), world.tokens.calls, world.state.health[A]
    world.clock.at = NOW + timedelta(seconds=29)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = world.run(A)[A]
    assert result.skipped == "throttled until 2026-11-28 00:00:30 UTC (since 2026-11-28 00:00:00 UTC)"
    assert result.ok and not result.failed and result.delivered == 0
    assert (len(world.server.sessions), world.tokens.calls) == (sessions, tokens)
    assert world.state.health[A] is health  # nothing written
    [skip] = lines(caplog, f"{SKIPPED_LOG_TEXT}: {A}")
    assert skip.levelno == logging.INFO and lines(caplog, FAILURE_LOG_TEXT) == []

    world.clock.at = NOW + timedelta(seconds=30)
    assert world.run(A)[A].delivered == 2
    health = world.state.health[A]
    assert (health.throttled_until, health.throttled_since, health.throttle_count) == (None, None, 0)


def test_throttled_in_the_middle_of_a_fetch_what_was_delivered_stays_checkpointed():
    world = World()
    world.fill(A, 7)
    # The size FETCH and two body FETCHes (two messages each) pass; the third is refused.
    world.server.refuse(A, throttled(60), at="UID FETCH", after=3)
    result = world.run(A)[A]
    assert result.throttled_until is not None and result.delivered == 4
    assert world.state.rows[(A, "INBOX")].last_uid == 4 and len(world.sink.blobs) == 4
    world.clock.at = NOW + timedelta(minutes=1)
    assert world.run(A)[A].delivered == 3 and len(world.sink.blobs) == 7


def test_the_wait_counts_from_the_servers_answer_not_from_after_the_uploads_settle():
    world = World()
    world.fill(A, 7)
    world.server.refuse(A, throttled(60), at="UID FETCH", after=3)
    create = world.sink.create

    def hold_the_second_batch(name: str, raw: bytes, metadata: Mapping[str, str]) -> bool:
        # Messages 3 and 4 are stored only once the third body FETCH was refused, so their
        # checkpoint is written after the answer: an hour later by this clock.
        if int(name.rsplit("/", 1)[1].removesuffix(".eml")) in (3, 4):
            deadline = time.monotonic() + 10
            while world.server.sessions[-1].commands.count("UID FETCH") < 4:
                assert time.monotonic() < deadline, "the third body FETCH never came"
                time.sleep(0.005)
        return create(name, raw, metadata)

    put_checkpoint = world.state.put_checkpoint

    def slow_checkpoint(checkpoint: Checkpoint) -> Checkpoint:
        if checkpoint.last_uid == 4:
            world.clock.at += timedelta(hours=1)
        return put_checkpoint(checkpoint)

    world.sink.create = hold_the_second_batch  # type: ignore[method-assign]
    world.state.put_checkpoint = slow_checkpoint  # type: ignore[method-assign]
    result = world.run(A)[A]
    assert world.state.rows[(A, "INBOX")].last_uid == 4
    assert result.throttled_until == NOW + timedelta(seconds=60)


def test_throttled_opening_a_later_folder_stops_the_mailbox_not_just_the_folder():
    world = World()
    world.fill(A, 2)
    world.server.folder(A, "Archive").append(message(9))
    world.server.refuse(A, throttled(None), at="EXAMINE", after=1)
    result = world.poller.run([MailboxConfig(A, ("INBOX", "Archive"))]).mailboxes[0]
    assert result.throttled_until is not None and result.folder_errors == []
    assert result.delivered == 2 and world.state.health[A].folder_errors is None


def test_without_a_suggested_time_the_persisted_back_off_grows_until_a_success():
    world = World()
    world.fill(A, 1)
    waits = []
    for _ in range(3):
        world.server.refuse(A, throttled(None))
        result = world.run(A)[A]
        assert result.throttled_until is not None
        waits.append(result.throttled_until - world.clock.at)
        world.clock.at = result.throttled_until
    assert 48 <= waits[0].total_seconds() <= 72 and 192 <= waits[2].total_seconds() <= 288
    assert world.state.health[A].throttle_count == 3
    assert world.state.health[A].throttled_since == NOW
    assert world.run(A)[A].delivered == 1 and world.state.health[A].throttle_count == 0


def test_after_hours_of_throttling_the_failure_line_is_logged_on_every_run(caplog):
    world = World()
    world.fill(A, 1)
    world.server.refuse(A, throttled(1800))
    world.run(A)
    world.clock.at = NOW + ALERT_AFTER - timedelta(minutes=1)
    world.server.refuse(A, throttled(1800))
    with caplog.at_level(logging.INFO):
        world.run(A)
    assert lines(caplog, FAILURE_LOG_TEXT) == []
    world.clock.at += timedelta(minutes=5)  # inside the wait: skipped, but stuck for 3 h
    with caplog.at_level(logging.INFO):
        skipped = world.run(A)[A]
    assert skipped.skipped is not None
    [line] = lines(caplog, FAILURE_LOG_TEXT)
    assert line.levelno == logging.ERROR
    assert line.getMessage().startswith(f"{FAILURE_LOG_TEXT}: {A}: MailboxThrottled: throttled since "
                                        "2026-11-28 00:00:00 UTC (3.1 h without a success)")


def test_a_throttled_pop3_login_gets_the_same_treatment(caplog):
    world = World()
    world.pop3.deliver(A, "u1", message(1))
    world.pop3.throttled[A] = throttled(5)
    with caplog.at_level(logging.INFO):
        [result] = world.poller.run([MailboxConfig(A, protocol="pop3")]).mailboxes
    assert result.throttled_until == NOW + timedelta(seconds=5) and not result.failed
    assert lines(caplog, FAILURE_LOG_TEXT) == [] and len(lines(caplog, THROTTLED_LOG_TEXT)) == 1
    [skipped] = world.poller.run([MailboxConfig(A, protocol="pop3")]).mailboxes
    assert skipped.skipped is not None and world.pop3.sessions == []
    world.clock.at += timedelta(seconds=5)
    [delivered] = world.poller.run([MailboxConfig(A, protocol="pop3")]).mailboxes
    assert delivered.delivered == 1


def test_a_run_whose_mailboxes_are_all_throttled_has_no_failure():
    world = World()
    for address in (A, B):
        world.fill(address, 1)
        world.server.refuse(address, throttled(60))
    report = world.poller.run([MailboxConfig(A), MailboxConfig(B)])
    assert report.failed == [] and len(report.throttled) == 2


# -- one connection per mailbox ----------------------------------------------------------------

def test_a_mailbox_whose_lease_another_run_holds_is_skipped_without_a_login(caplog):
    leases = FakeLeaseStore()
    world = World(leases=leases)
    world.fill(A, 2)
    world.fill(B, 1)
    holder = leases.acquire(A)
    with caplog.at_level(logging.INFO):
        results = world.run(A, B)
    assert (results[A].skipped or "").startswith(LEASE_SKIP) and results[A].ok and results[B].delivered == 1
    assert world.server.peak.get(A) is None and world.server.peak[B] == 1
    assert lines(caplog, f"{SKIPPED_LOG_TEXT}: {A}") and lines(caplog, FAILURE_LOG_TEXT) == []
    assert leases.held[A] is holder and B not in leases.held  # B's was given back
    holder.release()
    assert world.run(A)[A].delivered == 2


def test_a_throttled_mailbox_is_skipped_before_its_lease_is_taken():
    leases = FakeLeaseStore()
    world = World(leases=leases)
    world.fill(A, 1)
    world.server.refuse(A, throttled(60))
    world.run(A)
    granted = len(leases.granted)
    assert world.run(A)[A].skipped is not None and len(leases.granted) == granted


def test_a_lease_that_cannot_be_taken_fails_the_mailbox_and_says_why():
    class Unreachable(FakeLeaseStore):
        def acquire(self, mailbox: str):
            raise StorageError("blob storage unreachable")

    world = World(leases=Unreachable())
    world.fill(A, 1)
    result = world.run(A)[A]
    assert result.failed and "unreachable" in (result.error or "")
    assert world.state.health[A].consecutive_failures == 1 and world.server.sessions == []


def test_a_caller_holding_the_lease_polls_without_a_health_read_or_a_second_lease():
    leases = FakeLeaseStore()
    world = World(leases=leases)
    world.fill(A, 1)
    held = leases.acquire(A)
    [result] = world.poller.run([MailboxConfig(A)], lease_held=True).mailboxes
    assert result.delivered == 1 and world.state.health_reads == 0
    assert leases.granted == [held]


# -- fan-out ---------------------------------------------------------------------------------

class QueueHealthRows:
    def __init__(self, rows: dict[str, Health]) -> None:
        self.rows = rows
        self.reads = 0

    def get_health(self, mailbox: str) -> Health | None:
        self.reads += 1
        return self.rows.get(mailbox)

    def record_queue_given_up(self, mailbox, *, attempts, at) -> None:
        raise AssertionError("a throttled mailbox is never given up")


def test_a_queued_poll_of_a_throttled_mailbox_completes_after_one_health_read():
    leases = FakeLeaseStore()
    health = QueueHealthRows({A: Health(A, throttled_until=NOW + timedelta(minutes=5), throttled_since=NOW)})
    polled: list[MailboxConfig] = []

    def poll(mailbox: MailboxConfig) -> MailboxResult:
        polled.append(mailbox)
        return MailboxResult(mailbox.address)

    result = QueueWorker(leases, health, FakeClock()).handle(
        poll_message(A), dequeue_count=1, mailboxes=[MailboxConfig(A)], poll=poll)
    assert result is not None and (result.skipped or "").startswith("throttled until")
    assert polled == [] and leases.granted == [] and health.reads == 1


def test_a_queued_poll_that_is_throttled_completes_its_message_on_any_attempt():
    result = MailboxResult(A, error="throttled", error_type="MailboxThrottled",
                           throttled_until=NOW + timedelta(minutes=5))
    assert outcome_of(result, dequeue_count=1) is Outcome.DONE
    assert outcome_of(result, dequeue_count=3) is Outcome.DONE
