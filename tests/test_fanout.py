"""Fan-out logic against in-memory ports: messages, the per-mailbox lease, retries and poison."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from shared.fanout import (
    MAX_DEQUEUE_COUNT,
    LeaseKeeper,
    MailboxPollFailed,
    Outcome,
    QueueWorker,
    enqueue_polls,
    outcome_of,
    parse_poll_message,
    poll_message,
)
from shared.model import Health, MailboxResult
from shared.naming import LEASE_SECONDS, lease_container_name
from shared.poll import Poller, PollOptions
from shared.setting_specs import SPECS
from shared.settings import MailboxConfig
from tests.fakes import (
    FakeClock,
    FakeLeaseStore,
    FakeServer,
    FakeSink,
    FakeStateStore,
    FakeTokens,
)

A, B = "ops@contoso.com", "billing@contoso.com"
MAILBOXES = (MailboxConfig(A), MailboxConfig(B, ("INBOX", "Invoices")))
HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"


class FakeQueue:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, text: str) -> None:
        self.messages.append(text)


class FakeQueueHealth:
    def __init__(self) -> None:
        self.given_up: list[tuple[str, int, datetime]] = []
        self.rows: dict[str, Health] = {}
        self.reads = 0

    def get_health(self, mailbox: str) -> Health | None:
        self.reads += 1
        return self.rows.get(mailbox)

    def record_queue_given_up(self, mailbox: str, *, attempts: int, at: datetime) -> None:
        self.given_up.append((mailbox, attempts, at))


def ok(address: str) -> MailboxResult:
    return MailboxResult(address)


def failed(address: str) -> MailboxResult:
    return MailboxResult(address, error="AUTHENTICATE failed", error_type="MailboxAccessError")


@pytest.fixture
def leases() -> FakeLeaseStore:
    return FakeLeaseStore()


@pytest.fixture
def health() -> FakeQueueHealth:
    return FakeQueueHealth()


@pytest.fixture
def worker(leases: FakeLeaseStore, health: FakeQueueHealth) -> QueueWorker:
    return QueueWorker(leases, health, FakeClock())


class Polls:
    """Records which mailboxes were polled and answers with a given result."""

    def __init__(self, outcome: Callable[[str], MailboxResult] = ok) -> None:
        self.polled: list[str] = []
        self.outcome = outcome

    def __call__(self, mailbox: MailboxConfig) -> MailboxResult:
        self.polled.append(mailbox.address)
        return self.outcome(mailbox.address)


# -- messages ------------------------------------------------------------------------------

def test_the_timer_queues_one_message_per_mailbox_and_each_names_its_mailbox():
    queue = FakeQueue()
    assert enqueue_polls(queue, MAILBOXES) == 2
    assert [json.loads(m) for m in queue.messages] == [{"mailbox": A}, {"mailbox": B}]
    assert [parse_poll_message(m, MAILBOXES) for m in queue.messages] == list(MAILBOXES)


def test_a_message_matches_its_mailbox_whatever_the_case():
    assert parse_poll_message(poll_message("OPS@Contoso.com"), MAILBOXES) == MAILBOXES[0]


@pytest.mark.parametrize("body", [
    poll_message("gone@contoso.com"), "not json", "[1, 2]", '{"mailbox": 7}', '"ops@contoso.com"', "",
])
def test_a_message_naming_no_configured_mailbox_is_dropped_without_a_poll_or_a_retry(
        worker, leases, body, caplog):
    polls = Polls()
    with caplog.at_level(logging.ERROR, logger="mailferry.fanout"):
        assert worker.handle(body, dequeue_count=1, mailboxes=MAILBOXES, poll=polls) is None
    assert polls.polled == [] and leases.granted == []
    assert "poll message dropped" in caplog.text


# -- the lease -----------------------------------------------------------------------------

def test_a_poll_runs_under_the_mailboxs_lease_and_gives_it_back(worker, leases):
    polls = Polls()
    result = worker.handle(poll_message(A), dequeue_count=1, mailboxes=MAILBOXES, poll=polls)
    assert result is not None and result.ok and polls.polled == [A]
    assert [lease.released for lease in leases.granted] == [True] and leases.held == {}


def test_while_another_poll_holds_the_lease_the_message_completes_without_polling(
        worker, leases, caplog):
    holder = leases.acquire(A)
    polls = Polls()
    with caplog.at_level(logging.INFO, logger="mailferry.fanout"):
        assert worker.handle(poll_message(A), dequeue_count=1, mailboxes=MAILBOXES,
                             poll=polls) is None
    assert polls.polled == [] and leases.held[A] is holder
    assert "another poll holds its lease" in caplog.text
    # Other mailboxes are not blocked by it.
    assert worker.handle(poll_message(B), dequeue_count=1, mailboxes=MAILBOXES, poll=polls)
    assert polls.polled == [B]


def test_a_lease_left_by_a_crashed_worker_expires_and_the_next_message_polls(worker, leases):
    leases.acquire(A)  # never released: its worker died
    polls = Polls()
    assert worker.handle(poll_message(A), dequeue_count=1, mailboxes=MAILBOXES, poll=polls) is None
    leases.expire(A)
    assert worker.handle(poll_message(A), dequeue_count=2, mailboxes=MAILBOXES, poll=polls)
    assert polls.polled == [A]


def test_duplicate_messages_handled_at_once_poll_the_mailbox_once(worker):
    inside, second_done = threading.Event(), threading.Event()
    polled: list[str] = []

    def slow_poll(mailbox: MailboxConfig) -> MailboxResult:
        polled.append(mailbox.address)
        inside.set()
        assert second_done.wait(10)
        return ok(mailbox.address)

    results: list[MailboxResult | None] = []
    first = threading.Thread(target=lambda: results.append(
        worker.handle(poll_message(A), dequeue_count=1, mailboxes=MAILBOXES, poll=slow_poll)))
    first.start()
    assert inside.wait(10)
    results.append(worker.handle(poll_message(A), dequeue_count=1, mailboxes=MAILBOXES,
                                 poll=slow_poll))
    second_done.set()
    first.join(10)
    assert polled == [A]
    assert results[0] is None and results[1] is not None and results[1].ok


def test_the_lease_is_renewed_while_the_poll_runs_and_released_after(leases):
    lease = leases.acquire(A)
    assert lease is not None
    with LeaseKeeper(lease, every_seconds=0.01, mailbox=A):
        while lease.renewals < 3:
            time.sleep(0.01)
    renewed = lease.renewals
    time.sleep(0.05)
    assert lease.released and lease.renewals == renewed


def test_a_lost_lease_is_logged_and_the_poll_goes_on(leases, caplog):
    lease = leases.acquire(A)
    assert lease is not None
    lease.renew_fails = True
    with (caplog.at_level(logging.WARNING, logger="mailferry.fanout"),
          LeaseKeeper(lease, every_seconds=0.01, mailbox=A)):
        time.sleep(0.05)
    assert "could not renew the poll lease" in caplog.text and lease.released


def test_the_worker_renews_the_lease_well_within_its_duration(health):
    leases = FakeLeaseStore(duration_seconds=0.06)  # renewed every 0.02 s

    def slow_poll(mailbox: MailboxConfig) -> MailboxResult:
        time.sleep(0.2)
        return ok(mailbox.address)

    QueueWorker(leases, health, FakeClock()).handle(poll_message(A), dequeue_count=1,
                                                    mailboxes=MAILBOXES, poll=slow_poll)
    [lease] = leases.granted
    assert lease.renewals >= 3 and lease.released


def test_a_poll_that_raises_still_gives_the_lease_back(worker, leases):
    def broken(mailbox: MailboxConfig) -> MailboxResult:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        worker.handle(poll_message(A), dequeue_count=1, mailboxes=MAILBOXES, poll=broken)
    assert leases.held == {} and leases.granted[0].released


# -- retries and poison --------------------------------------------------------------------

@pytest.mark.parametrize(("ok_result", "dequeue_count", "expected"), [
    (True, 1, Outcome.DONE),
    (True, MAX_DEQUEUE_COUNT, Outcome.DONE),
    (False, 1, Outcome.RETRY),
    (False, MAX_DEQUEUE_COUNT - 1, Outcome.RETRY),
    (False, MAX_DEQUEUE_COUNT, Outcome.GIVE_UP),
    (False, MAX_DEQUEUE_COUNT + 2, Outcome.GIVE_UP),
])
def test_outcome_of_a_poll(ok_result, dequeue_count, expected):
    result = ok(A) if ok_result else failed(A)
    assert outcome_of(result, dequeue_count=dequeue_count) is expected


def test_a_failed_poll_with_attempts_left_raises_so_the_host_retries(worker, leases, health):
    with pytest.raises(MailboxPollFailed, match=rf"{A}: poll failed \(attempt 1 of {MAX_DEQUEUE_COUNT}"):
        worker.handle(poll_message(A), dequeue_count=1, mailboxes=MAILBOXES, poll=Polls(failed))
    assert health.given_up == [] and leases.held == {}


def test_the_last_failed_attempt_is_recorded_in_health_and_does_not_raise(worker, leases, health):
    result = worker.handle(poll_message(A), dequeue_count=MAX_DEQUEUE_COUNT, mailboxes=MAILBOXES,
                           poll=Polls(failed))
    assert result is not None and not result.ok
    assert health.given_up == [(A, MAX_DEQUEUE_COUNT, FakeClock().now())]
    assert leases.held == {}


def test_with_the_real_poller_a_refused_mailbox_is_retried_then_given_up(leases, health):
    server, sink, state = FakeServer(), FakeSink(), FakeStateStore()
    server.folder(A).append(b"Subject: x\r\n\r\nx\r\n")
    server.refused.add(A)
    poller = Poller(FakeTokens(), server, sink, state, state, PollOptions(), FakeClock())
    worker = QueueWorker(leases, health, FakeClock())

    def poll(mailbox: MailboxConfig) -> MailboxResult:
        [result] = poller.run([mailbox]).mailboxes
        return result

    for attempt in range(1, MAX_DEQUEUE_COUNT):
        with pytest.raises(MailboxPollFailed):
            worker.handle(poll_message(A), dequeue_count=attempt, mailboxes=MAILBOXES, poll=poll)
    worker.handle(poll_message(A), dequeue_count=MAX_DEQUEUE_COUNT, mailboxes=MAILBOXES, poll=poll)
    assert state.health[A].consecutive_failures == MAX_DEQUEUE_COUNT
    assert [(m, n) for m, n, _ in health.given_up] == [(A, MAX_DEQUEUE_COUNT)]
    server.refused.clear()
    result = worker.handle(poll_message(A), dequeue_count=1, mailboxes=MAILBOXES, poll=poll)
    assert result is not None and result.delivered == 1 and len(sink.blobs) == 1


# -- host.json and names -------------------------------------------------------------------

def test_host_json_queue_settings_agree_with_the_code():
    queues = json.loads(HOST_JSON.read_text())["extensions"]["queues"]
    assert queues["maxDequeueCount"] == MAX_DEQUEUE_COUNT
    # The adapter base64-encodes what it sends (TextBase64EncodePolicy).
    assert queues["messageEncoding"] == "base64"
    # A retry after a crashed attempt must find that attempt's lease expired, not skip.
    hours, minutes, seconds = (int(p) for p in queues["visibilityTimeout"].split(":"))
    assert hours * 3600 + minutes * 60 + seconds > LEASE_SECONDS
    # An instance polls as many mailboxes at once as an inline run does by default: the host
    # runs up to batchSize + newBatchThreshold, and fetches again with newBatchThreshold left.
    assert queues["batchSize"] + queues["newBatchThreshold"] == int(SPECS["MAX_CONCURRENT_MAILBOXES"].default or 0)
    assert 0 < queues["newBatchThreshold"] < queues["batchSize"] + queues["newBatchThreshold"]


CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@pytest.mark.parametrize("mail_container", ["mail", "mail-2024", "m" * 56, "a" * 63, "ab-" * 21])
def test_the_lease_container_is_a_valid_name_beside_the_mail_container(mail_container):
    name = lease_container_name(mail_container)
    assert CONTAINER.match(name) and name != mail_container and name.endswith("-leases")
    if len(mail_container) <= 56:
        assert name == f"{mail_container}-leases"


def test_enqueue_sends_one_message_per_mailbox_from_several_threads():
    queue = FakeQueue()
    mailboxes = [MailboxConfig(f"box{n}@contoso.com") for n in range(500)]
    assert enqueue_polls(queue, mailboxes, concurrency=8) == 500
    assert sorted(json.loads(m)["mailbox"] for m in queue.messages) == sorted(
        m.address for m in mailboxes)


def test_inline_mode_warns_when_its_mailboxes_cannot_fit_the_time_box(caplog):
    from shared.entry import warn_if_inline_cannot_fit

    with caplog.at_level(logging.WARNING, logger="mailferry"):
        assert not warn_if_inline_cannot_fit(100, 4, 480)
        assert warn_if_inline_cannot_fit(5000, 4, 480)
    assert "POLL_MODE=fanout" in caplog.text
