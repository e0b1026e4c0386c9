"""Dropped connections, time shares and upload give-ups against in-memory ports: end state."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import pytest

from shared.batching import GROW_AFTER, BatchLimits
from shared.delivery import ConcurrentDelivery
from shared.errors import FailureKind, StorageError
from shared.model import FolderResult, FolderState, PollOptions
from shared.naming import blob_name
from shared.poll import Poller, SilentObserver
from shared.reconnect import ReconnectPolicy
from shared.settings import MailboxConfig
from shared.time_box import MailboxShares, TimeBoxedCalls
from tests.fakes import (
    FakeClock,
    FakePop3Server,
    FakeServer,
    FakeSession,
    FakeSink,
    FakeStateStore,
    FakeTokens,
)

A, B = "ops@contoso.com", "billing@contoso.com"


def message(n: int) -> bytes:
    return f"Message-ID: <r{n}@contoso.com>\r\nSubject: s{n}\r\n\r\nbody {n}\r\n".encode()


class World:
    def __init__(self, *, batch: int = 10, attempts: int = 3, max_drops: int = 20) -> None:
        self.server, self.pop3 = FakeServer(), FakePop3Server()
        self.sink, self.state, self.clock = FakeSink(), FakeStateStore(), FakeClock()
        self.pauses: list[float] = []
        policy = ReconnectPolicy(attempts=attempts, max_drops=max_drops, sleep=self.pause,
                                 jitter=lambda: 0.5)
        self.poller = Poller(FakeTokens(), self.server, self.sink, self.state, self.state,
                             PollOptions(fetch_batch_size=batch, upload_concurrency=4,
                                         deadline_seconds=300), self.clock,
                             pop3=self.pop3, pop3_checkpoints=self.state, reconnect=policy)

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.clock.sleep(seconds)

    def seed(self, count: int, address: str = A) -> None:
        for n in range(count):
            self.server.folder(address).append(message(n))
            self.pop3.deliver(address, f"U{n:05d}", message(n))

    def uids_stored(self, address: str = A) -> list[int]:
        return sorted(int(name.rsplit("/", 1)[1][:-4]) for name in self.sink.blobs
                      if name.startswith(address))


@pytest.fixture
def world() -> World:
    return World()


def test_a_drop_mid_fetch_keeps_what_arrived_and_the_same_run_finishes_the_folder(world):
    world.seed(30)
    world.server.cuts[:] = [7, 3]  # the first FETCH drops after 7 messages, the next after 3
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert result.ok and result.complete, result.error
    assert result.delivered == 30 and result.folders[0].already_present == 0
    assert world.uids_stored() == list(range(1, 31))
    assert len(world.server.sessions) == 3 and len(world.pauses) == 2
    assert world.state.get_checkpoint(A, "INBOX").last_uid == 30


def test_a_reconnect_goes_on_with_the_plan_instead_of_listing_the_folder_again(world):
    world.seed(30)
    world.server.cuts[:] = [7]
    world.poller.run([MailboxConfig(A)])
    first, second = world.server.sessions
    assert first.commands.count("UID SEARCH") == 1
    # EXAMINE, then only body FETCHes: no SEARCH, no size FETCH for what is already known.
    assert second.commands[0] == "EXAMINE" and "UID SEARCH" not in second.commands
    assert world.server.fetched == [10, 5, 5, 5, 5, 3]  # UIDs 8-30 after the cut at 7
    assert world.uids_stored() == list(range(1, 31))


def test_after_a_drop_the_next_session_opens_while_what_arrived_is_still_being_stored(world):
    world.seed(30)
    world.server.cuts[:] = [7]
    seen_open: list[bool] = []

    def held_until_the_drop() -> None:
        # Writes wait for the drop, so they are in flight when it comes; then each notes
        # whether the next session was open before it went on (waiting 5 s at most).
        first_dropped_and_second_open = (
            lambda: world.server.sessions[0].dead, lambda: len(world.server.sessions) == 2)
        for condition in first_dropped_and_second_open:
            ends = time.monotonic() + 5
            while not condition() and time.monotonic() < ends:
                time.sleep(0.002)
        seen_open.append(len(world.server.sessions) == 2)

    set_up: set[str] = set()
    paused_on: list[str] = []
    world.sink.before_write = held_until_the_drop
    world.poller.reconnect = ReconnectPolicy(
        sleep=lambda _: paused_on.append(threading.current_thread().name))
    [result] = world.poller.run(
        [MailboxConfig(A)], on_thread_start=lambda: set_up.add(threading.current_thread().name)
    ).mailboxes
    assert result.ok and result.complete, result.error
    assert seen_open and all(seen_open)
    # The thread that reopened carries the invocation like every thread of a run.
    assert len(paused_on) == 1 and paused_on[0].startswith("reconnect") and paused_on[0] in set_up
    assert world.server.peak[A] == 1  # the dead session was closed first
    assert world.uids_stored() == list(range(1, 31))


def test_what_arrived_before_a_drop_goes_on_uploading_while_the_next_session_fetches(world):
    world.seed(30)
    world.server.cuts[:] = [7]
    seen_fetching: list[bool] = []

    def held_until_the_next_session_fetches() -> None:
        # Each write waits (5 s at most) for a body FETCH on the second session.
        def fetching() -> bool:
            sessions = world.server.sessions
            return len(sessions) == 2 and "UID FETCH" in sessions[1].commands

        ends = time.monotonic() + 5
        while time.monotonic() < ends and not fetching():
            time.sleep(0.002)
        seen_fetching.append(fetching())

    world.sink.before_write = held_until_the_next_session_fetches
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert result.ok and result.complete, result.error
    assert len(seen_fetching) == 30 and all(seen_fetching)
    assert world.server.fetched[:2] == [10, 5]  # UIDs 8-12 right after the cut at 7
    assert world.uids_stored() == list(range(1, 31)) and result.delivered == 30
    assert world.state.get_checkpoint(A, "INBOX").last_uid == 30
    assert world.server.peak[A] == 1


def test_after_a_passing_drop_the_folder_is_selected_again_as_the_new_session_opens(world,
                                                                                  monkeypatch):
    world.seed(30)
    world.server.cuts[:] = [7]
    selected_on: list[tuple[int, str]] = []
    select = FakeSession.select_folder

    def noting_the_thread(session: FakeSession, folder: str) -> FolderState:
        selected_on.append((world.server.sessions.index(session), threading.current_thread().name))
        return select(session, folder)

    monkeypatch.setattr(FakeSession, "select_folder", noting_the_thread)
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert result.ok and result.complete, result.error
    # Once on each session; the second time on the thread that opened it, not after it.
    assert [n for n, _ in selected_on] == [0, 1]
    assert selected_on[1][1].startswith("reconnect")
    assert world.uids_stored() == list(range(1, 31))


def test_giving_up_after_a_drop_first_stores_what_arrived_and_says_how_far():
    world = World(max_drops=0)
    world.seed(20)
    world.server.cuts[:] = [7]
    world.sink.before_write = lambda: time.sleep(0.01)  # still uploading when the drop comes
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert not result.ok
    assert "INBOX: delivered through UID 7;" in (result.error or ""), result.error
    checkpoint = world.state.get_checkpoint(A, "INBOX")
    assert checkpoint is not None and checkpoint.last_uid == 7
    assert world.uids_stored() == list(range(1, 8))


def test_storage_failing_uploads_left_running_by_a_drop_ends_the_run_at_the_last_stored_uid(world):
    world.seed(30)
    world.server.cuts[:] = [7]
    world.sink.fail_after = 5  # which five land first is up to the upload threads
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert not result.ok and result.error_type == "StorageError", result.error
    stored = world.uids_stored()
    through = next(n for n in range(len(stored) + 1) if n + 1 not in stored)
    assert len(stored) == 5
    assert f"INBOX: delivered through UID {through};" in (result.error or ""), result.error
    assert world.state.get_checkpoint(A, "INBOX").last_uid == through
    assert len(world.server.sessions) <= 2


def test_a_message_expunged_while_the_connection_was_down_is_found_gone_not_waited_for(world):
    world.seed(20)
    world.server.cuts[:] = [3]
    world.poller.reconnect = ReconnectPolicy(sleep=lambda _: world.server.folder(A).expunge(15))
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert result.ok and result.complete, result.error
    assert world.uids_stored() == [u for u in range(1, 21) if u != 15]
    assert world.state.get_checkpoint(A, "INBOX").last_uid == 20


def test_messages_fully_received_before_a_drop_are_never_fetched_again(world):
    world.seed(12)
    world.server.cuts[:] = [5]
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    # Each message written once: none of the five received before the drop came again.
    assert world.sink.writes == 12 and result.folders[0].already_present == 0


def test_drops_that_each_deliver_something_do_not_use_up_the_reconnects(world):
    world.seed(40)
    world.server.cuts[:] = [4, 4, 4, 4, 4, 4]  # more drops than reconnects in a row
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert result.ok and result.complete, result.error
    assert world.uids_stored() == list(range(1, 41))
    # Each drop came after progress: each reconnect waits only the short pause.
    assert world.pauses == [0.05 * 0.75] * 6 and len(world.server.sessions) == 7


def test_drops_in_a_row_with_nothing_delivered_back_off_then_give_up_saying_what_is_durable(world):
    world.seed(40)
    world.server.cuts[:] = [4, 0, 0, 0]  # progress, then three drops that deliver nothing
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert not result.ok
    error = result.error or ""
    assert "dropped 4 times in a row with nothing delivered between" in error, error
    assert "INBOX: delivered through UID 4" in error and "the next run resumes there" in error
    assert world.pauses == [0.05 * 0.75, 1.0 * 0.75, 2.0 * 0.75]  # doubling while nothing moves
    assert world.state.get_checkpoint(A, "INBOX").last_uid == 4
    assert world.poller.run([MailboxConfig(A)]).delivered == 36
    assert world.uids_stored() == list(range(1, 41))


def test_a_run_gives_up_after_its_most_drops_even_with_progress_between():
    world = World(max_drops=3)
    world.seed(40)
    world.server.cuts[:] = [2, 2, 2, 2]
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert not result.ok
    # Batches of 10, 5, 2 and 1 (halved after each drop), each cut after 2 at most: 2+2+2+1.
    assert "dropped 4 times in this run" in (result.error or "")
    assert "INBOX: delivered through UID 7" in (result.error or "")
    assert world.poller.run([MailboxConfig(A)]).delivered == 33


def test_the_batch_halves_after_each_drop_before_a_whole_batch_and_grows_back():
    limits = BatchLimits(100, 8 * 1024 * 1024)
    limits.dropped()
    limits.dropped()
    assert (limits.count, limits.size) == (25, 2 * 1024 * 1024)
    for _ in range(GROW_AFTER):
        limits.arrived()
    assert limits.count == 50
    for _ in range(10 * GROW_AFTER):
        limits.arrived()
    assert (limits.count, limits.size) == (100, 8 * 1024 * 1024)
    limits.dropped()  # after whole batches on that connection: the link, not the size
    assert (limits.count, limits.size) == (100, 8 * 1024 * 1024)
    for _ in range(20):
        limits.dropped()
    assert limits.count == 1 and limits.size == 256 * 1024


def test_a_drop_after_whole_batches_keeps_the_batch_size(world):
    world.seed(40)
    world.server.cuts[:] = [None, 2]  # the second FETCH drops after 2 messages
    world.poller.run([MailboxConfig(A)])
    assert world.server.fetched == [10, 10, 10, 10, 8]
    assert world.uids_stored() == list(range(1, 41))


def test_after_a_drop_the_next_fetches_ask_for_fewer_messages(world):
    world.seed(40)
    world.server.cuts[:] = [2]
    world.poller.run([MailboxConfig(A)])
    assert world.server.fetched[:2] == [10, 5]  # halved: nothing arrived whole before the drop
    assert len(world.sink.blobs) == 40


def test_no_reconnect_once_the_time_box_is_spent(world):
    world.seed(20)
    world.server.cuts[:] = [3]
    world.poller.options = PollOptions(fetch_batch_size=10, deadline_seconds=10)
    world.poller.reconnect = ReconnectPolicy(quick_pause=30.0, max_pause=60.0, sleep=world.pause)
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert not result.ok and world.pauses == []
    assert "No time is left to reconnect in this run" in (result.error or "")
    assert "delivered through UID 3" in (result.error or "")
    assert world.state.get_checkpoint(A, "INBOX").last_uid == 3


def test_every_session_is_told_the_end_of_the_mailboxes_time_box(world):
    world.seed(1)
    world.poller.run([MailboxConfig(A)])
    [deadline] = world.server.deadlines
    assert deadline is not None and 300 < deadline <= 300 + 10  # the share's end and the grace


def test_a_pop3_drop_mid_maildrop_reconnects_and_loses_nothing(world):
    world.seed(25)
    world.pop3.cuts[:] = [11, 6]
    [result] = world.poller.run([MailboxConfig(A, ("INBOX",), "pop3")]).mailboxes
    assert result.ok and result.delivered == 25, result.error
    assert len(world.pop3.sessions) == 3
    assert sorted(world.sink.blobs) == sorted(
        n for n in world.sink.blobs if n.startswith(A))  # one blob per message, nothing else
    assert len(world.sink.blobs) == 25


def test_a_storage_failure_says_what_is_durable(world):
    world.seed(30)
    world.sink.fail_after = 15
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert not result.ok and result.error_type == "StorageError"
    last = world.state.get_checkpoint(A, "INBOX").last_uid
    assert f"INBOX: delivered through UID {last}" in (result.error or "")
    assert "the next run resumes there" in (result.error or "")
    world.sink.fail_after = None
    world.poller.run([MailboxConfig(A)])
    assert world.uids_stored() == list(range(1, 31))


def test_a_mailbox_starting_gets_a_fair_share_of_what_is_left():
    clock = FakeClock()
    shares = MailboxShares(clock, 400.0, mailboxes=4, workers=1)
    assert shares.next_deadline() == 100.0  # a quarter of 400 s
    clock.seconds = 40.0  # the first finished early: its time goes to those after it
    assert shares.next_deadline() == 40.0 + 360.0 / 3
    clock.seconds = 160.0
    assert shares.next_deadline() == 160.0 + 240.0 / 2
    assert shares.next_deadline() == 400.0  # the last one gets all that is left


def test_a_slow_mailbox_cannot_take_the_time_of_those_behind_it():
    world = World(batch=1)
    for address in (A, B):
        world.seed(50, address)
    world.poller.options = PollOptions(fetch_batch_size=1, max_concurrent_mailboxes=1,
                                       deadline_seconds=100)
    world.clock.tick = 1.0  # every look at the clock: a second passes (a slow server)
    report = world.poller.run([MailboxConfig(A), MailboxConfig(B)])
    by_address = {m.address: m for m in report.mailboxes}
    assert by_address[A].delivered > 0 and by_address[B].delivered > 0


class StalledSink(FakeSink):
    """Storage that takes uploads but never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def create(self, name: str, raw: bytes, metadata: Mapping[str, str]) -> bool:
        self.release.wait(30)
        return super().create(name, raw, metadata)


def test_uploads_that_never_finish_are_given_up_at_the_end_of_the_time_box():
    clock, sink = FakeClock(), StalledSink()
    result = FolderResult("INBOX")
    stored: list[int] = []
    try:
        with ConcurrentDelivery[int](sink, address=A, result=result, observer=SilentObserver(),
                                     concurrency=2, on_stored=stored.append, clock=clock,
                                     waits_end=0.2) as delivery:
            for uid in range(3):
                delivery.upload(uid, blob_name(A, "INBOX", 1, uid), b"x", {})
            delivery.settle()
        failure = delivery.failure
        assert failure is not None and getattr(failure, "kind", None) is FailureKind.STORAGE_UNREACHABLE
        assert "still running when the run's time box ended" in str(failure)
        assert stored == [] and result.delivered == 0
    finally:
        sink.release.set()


def test_the_first_reconnect_is_quick_then_the_pause_doubles_with_jitter_up_to_its_cap():
    policy = ReconnectPolicy(quick_pause=0.05, first_pause=1.0, max_pause=15.0, jitter=lambda: 1.0)
    assert [policy.pause(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [0.05, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    assert ReconnectPolicy(first_pause=4.0, jitter=lambda: 0.0).pause(2) == 2.0
    assert ReconnectPolicy(quick_pause=0.5, jitter=lambda: 0.0).pause(1) == 0.25


def test_a_checkpoint_write_that_never_returns_is_given_up_at_the_end_of_the_time_box():
    clock, release = FakeClock(), threading.Event()
    clock.seconds = 100.0  # past the box: the write gets the last short wait only
    try:
        with TimeBoxedCalls(clock, until=50.0) as calls:
            with pytest.raises(StorageError, match="did not answer before the run's time box ended"):
                calls.call("write the checkpoint of ops/INBOX", lambda: release.wait(30))
            with pytest.raises(StorageError, match="an earlier call"):  # no second wait
                calls.call("write the checkpoint of ops/INBOX", lambda: True)
    finally:
        release.set()
    with TimeBoxedCalls(clock, until=50.0) as calls:
        assert calls.call("write", lambda: 7) == 7


def test_a_large_message_cut_mid_stream_is_never_half_stored_and_is_delivered_after_the_reconnect():
    world = World()
    world.poller.options = PollOptions(large_message_bytes=1024, deadline_seconds=300)
    big = message(1) + b"L" * (9 * 1024 * 1024)  # three pieces
    folder = world.server.folder(A)
    folder.append(message(0))
    folder.append(big)
    world.server.cuts[:] = [None, 0]  # the first FETCH whole; the stream cut after one piece
    [result] = world.poller.run([MailboxConfig(A)]).mailboxes
    assert result.ok and result.delivered == 2, result.error
    name = blob_name(A, "INBOX", 1, 2)
    assert world.sink.streamed == [name]  # committed once, from the second connection
    assert world.sink.blobs[name][0] == big
    assert len(world.server.sessions) == 2
