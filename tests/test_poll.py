"""The poll algorithm against in-memory ports: end state, not calls."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from shared.errors import StorageError
from shared.model import FolderResult
from shared.naming import blob_name
from shared.poll import Poller, PollOptions
from shared.settings import MailboxConfig
from tests.fakes import FakeClock, FakePop3Server, FakeServer, FakeSink, FakeStateStore, FakeTokens

A, B = "ops@contoso.com", "billing@contoso.com"


def message(n: int, *, with_id: bool = True) -> bytes:
    mid = f"Message-ID: <m{n}@contoso.com>\r\n" if with_id else ""
    return f"{mid}From: a@b.c\r\nSubject: s{n}\r\nDate: Sat, 28 Nov 2026 10:{n % 60:02d}:00 +0000\r\n\r\nbody {n}\r\n".encode()


@pytest.fixture
def world() -> tuple[Poller, FakeServer, FakeSink, FakeStateStore]:
    server, sink, state = FakeServer(), FakeSink(), FakeStateStore()
    poller = Poller(FakeTokens(), server, sink, state, state,
                    PollOptions(fetch_batch_size=3, upload_concurrency=2), FakeClock())
    return poller, server, sink, state


def test_delivers_every_message_once_and_a_second_run_delivers_nothing(world):
    poller, server, sink, state = world
    for n in range(7):
        server.folder(A).append(message(n))
    first = poller.run([MailboxConfig(A)])
    second = poller.run([MailboxConfig(A)])
    assert first.delivered == 7 and second.delivered == 0
    assert {name: raw for name, (raw, _) in sink.blobs.items()} == {
        blob_name(A, "INBOX", 1, uid): raw for uid, raw in server.folder(A).messages.items()}
    assert state.get_checkpoint(A, "INBOX").last_uid == 7


def test_empty_poll_sends_few_commands_and_writes_nothing(world):
    poller, server, sink, state = world
    server.folder(A).append(message(1))
    poller.run([MailboxConfig(A)])
    writes_before = (sink.writes, state.writes)
    poller.run([MailboxConfig(A)])
    assert server.sessions[-1].commands == ["EXAMINE", "UID SEARCH"]
    assert (sink.writes, state.writes) == writes_before


def test_mail_arriving_between_runs_is_picked_up(world):
    poller, server, sink, _ = world
    server.folder(A).append(message(1))
    poller.run([MailboxConfig(A)])
    server.folder(A).append(message(2))
    assert poller.run([MailboxConfig(A)]).delivered == 1
    assert len(sink.blobs) == 2


def test_a_run_dying_mid_batch_then_rerun_delivers_each_message_exactly_once(world):
    poller, server, sink, state = world
    for n in range(10):
        server.folder(A).append(message(n))
    sink.fail_after = 4  # storage fails partway through the second batch
    failed = poller.run([MailboxConfig(A)])
    assert not failed.mailboxes[0].ok
    # The checkpoint covers exactly the contiguous prefix of UIDs whose blobs exist.
    stored = {int(n.rsplit("/", 1)[1][:-4]) for n in sink.blobs}
    last = state.get_checkpoint(A, "INBOX").last_uid
    assert last >= 3 and set(range(1, last + 1)) <= stored and last + 1 not in stored
    sink.fail_after = None
    poller.run([MailboxConfig(A)])
    assert len(sink.blobs) == 10
    assert sorted(int(n.rsplit("/", 1)[1][:-4]) for n in sink.blobs) == list(range(1, 11))


def test_uidvalidity_change_resyncs_without_duplicates(world):
    poller, server, sink, state = world
    folder = server.folder(A)
    for n in range(4):
        folder.append(message(n, with_id=n % 2 == 0))  # half without Message-ID
    poller.run([MailboxConfig(A)])
    folder.renumber(uidvalidity=99)
    folder.append(message(100))  # new after the reset
    report = poller.run([MailboxConfig(A)])
    result = report.mailboxes[0].folders[0]
    assert result.resynced and result.duplicates_skipped == 4 and result.delivered == 1
    assert len(sink.blobs) == 5
    assert state.get_checkpoint(A, "INBOX").uidvalidity == 99


def test_resync_interrupted_halfway_still_skips_old_messages(world):
    poller, server, sink, _ = world
    folder = server.folder(A)
    for n in range(6):
        folder.append(message(n))
    poller.run([MailboxConfig(A)])
    folder.renumber(uidvalidity=7)
    sink.fail_after = sink.writes  # nothing more can be written: but old ones need no write
    poller.run([MailboxConfig(A)])
    sink.fail_after = None
    poller.run([MailboxConfig(A)])
    assert len(sink.blobs) == 6


def test_one_failing_mailbox_does_not_stop_the_others(world):
    poller, server, sink, state = world
    server.folder(A).append(message(1))
    server.folder(B).append(message(2))
    server.refused.add(A)
    report = poller.run([MailboxConfig(A), MailboxConfig(B)])
    by_address = {m.address: m for m in report.mailboxes}
    assert not by_address[A].ok and "AUTHENTICATE failed" in (by_address[A].error or "")
    assert by_address[B].ok and by_address[B].delivered == 1
    assert state.health[A].consecutive_failures == 1
    assert state.health[B].last_success_at is not None


def test_time_box_stops_between_batches_and_the_next_run_resumes(world):
    poller, server, sink, state = world
    for n in range(9):
        server.folder(A).append(message(n))
    clock = poller.clock
    assert isinstance(clock, FakeClock)
    poller.options = PollOptions(fetch_batch_size=3, deadline_seconds=10)
    clock.tick = 3.0  # each look at the clock costs 3 s: room for about one batch
    first = poller.run([MailboxConfig(A)])
    assert not first.mailboxes[0].complete and 0 < first.delivered < 9
    clock.tick = 0.0
    poller.run([MailboxConfig(A)])
    assert len(sink.blobs) == 9


def test_a_refused_token_fails_every_mailbox_and_records_each(world):
    poller, server, _, state = world
    server.folder(A)
    server.folder(B)
    poller.tokens = FakeTokens("bad-token")
    report = poller.run([MailboxConfig(A), MailboxConfig(B)])
    assert len(report.failed) == 2
    assert set(state.health) == {A, B}


def test_prefix_checkpoint_never_passes_a_missing_blob():
    from shared.batching import ContiguousPrefix

    prefix = ContiguousPrefix(10)
    prefix.expect([11, 12, 13, 15])
    prefix.done(12)
    prefix.done(13)
    assert prefix.through == 10  # 11 is not stored yet
    prefix.done(11)
    assert prefix.through == 13
    prefix.done(15)
    assert prefix.through == 15


def test_the_rest_of_a_cut_batch_expected_again_is_not_waited_for_twice():
    from shared.batching import ContiguousPrefix

    prefix = ContiguousPrefix(0)
    prefix.expect([1, 2, 3, 4])
    prefix.done(1)
    prefix.expect([3, 4, 5, 6])  # 2 is still uploading; 3 and 4 were cut by a drop
    for uid in (2, 3, 4, 5):
        prefix.done(uid)
    assert prefix.through == 5
    prefix.done(6)
    assert prefix.through == 6


def test_batches_are_bounded_by_count_and_bytes_and_large_messages_go_alone():
    from shared.batching import BatchLimits, plan_batches
    from shared.model import MessageInfo

    infos = [MessageInfo(1, 10), MessageInfo(2, 10), MessageInfo(3, 10), MessageInfo(4, 500),
             MessageInfo(5, 60), MessageInfo(6, 60)]
    batches = [[i.uid for i in b] for b in plan_batches(infos, BatchLimits(2, 100), large=400)]
    assert batches == [[1, 2], [3], [4], [5], [6]]


def test_large_messages_are_streamed_byte_for_byte(world):
    poller, server, sink, _ = world
    poller.options = PollOptions(fetch_batch_size=3, large_message_bytes=1024)
    big = message(1) + b"x" * (9 * 1024 * 1024 + 17)  # more than two stream chunks
    server.folder(A).append(message(0))
    server.folder(A).append(big)
    server.folder(A).append(message(2))

    def tag_thread() -> None:
        """Stands for the Functions invocation's ThreadStart."""

    report = poller.run([MailboxConfig(A)], on_thread_start=tag_thread)
    assert report.delivered == 3
    name = blob_name(A, "INBOX", 1, 2)
    assert sink.streamed == [name]
    assert sink.stream_thread_starts == [tag_thread]  # the staging threads carry the invocation
    raw, metadata = sink.blobs[name]
    assert raw == big and metadata["size"] == str(len(big))
    assert metadata["message_id"] == "<m1@contoso.com>"


def test_a_streamed_message_already_delivered_is_not_fetched_again(world):
    poller, server, sink, _ = world
    poller.options = PollOptions(large_message_bytes=1024)
    server.folder(A).append(message(1) + b"y" * 5000)
    poller.run([MailboxConfig(A)])
    state = poller.checkpoints
    checkpoint = state.get_checkpoint(A, "INBOX")
    assert isinstance(state, FakeStateStore) and checkpoint is not None
    state.rows[(A, "INBOX")] = type(checkpoint)(A, "INBOX", 1, 0, 0, checkpoint.etag)  # as if lost
    sessions = len(server.sessions)
    report = poller.run([MailboxConfig(A)])
    assert report.mailboxes[0].folders[0].already_present == 1
    assert server.sessions[sessions].commands.count("UID FETCH") == 1  # sizes only, no body


def test_a_large_message_found_after_a_uidvalidity_reset_is_skipped(world):
    poller, server, sink, _ = world
    poller.options = PollOptions(large_message_bytes=1024)
    folder = server.folder(A)
    folder.append(message(1) + b"z" * 5000)
    poller.run([MailboxConfig(A)])
    folder.renumber(uidvalidity=5)
    report = poller.run([MailboxConfig(A)])
    assert report.mailboxes[0].folders[0].duplicates_skipped == 1 and len(sink.blobs) == 1


def test_a_folder_that_cannot_be_opened_does_not_stop_the_others(world):
    poller, server, sink, state = world
    server.folder(A, "INBOX").append(message(1))
    server.folder(A, "Archive").append(message(2))
    for _ in range(2):  # run after run, the folders after the bad one are still delivered
        report = poller.run([MailboxConfig(A, ("INBOX", "Gone", "Archive"))])
        [result] = report.mailboxes
        assert result.ok
        assert [f.folder for f in result.folder_errors] == ["Gone"]
        assert "doesn't exist" in (result.folder_errors[0].error or "")
    assert len(sink.blobs) == 2
    assert state.get_checkpoint(A, "Archive").last_uid == 1
    assert "Gone" in (state.health[A].folder_errors or "")


class RacingStateStore(FakeStateStore):
    """Another run advances the checkpoint between this run's read and its write."""

    def put_checkpoint(self, checkpoint):
        stored = super().put_checkpoint(checkpoint)
        if stored.last_uid > 0 and not getattr(self, "raced", False):
            self.raced = True
            super().put_checkpoint(stored)  # the other run's write: a new ETag
        return stored


def test_a_run_that_loses_the_checkpoint_race_yields_without_failing():
    server, sink, state = FakeServer(), FakeSink(), RacingStateStore()
    poller = Poller(FakeTokens(), server, sink, state, state,
                    PollOptions(fetch_batch_size=2, upload_concurrency=2), FakeClock())
    for n in range(6):
        server.folder(A).append(message(n))
    server.folder(A, "Archive").append(message(9))
    [result] = poller.run([MailboxConfig(A, ("INBOX", "Archive"))]).mailboxes
    assert result.ok and result.error is None
    assert [f.yielded for f in result.folders] == [True, False]
    assert state.health[A].consecutive_failures == 0
    # The next run finishes what the yielding one left: every message exactly once.
    poller.run([MailboxConfig(A, ("INBOX", "Archive"))])
    assert len(sink.blobs) == 7


def test_a_spent_time_box_starts_no_more_mailboxes_and_the_unreached_go_first_next_run(world):
    poller, server, sink, state = world
    addresses = [f"box{n}@contoso.com" for n in range(5)]
    for address in addresses:
        server.folder(address).append(message(1))
    clock = FakeClock()
    clock.tick = 100.0  # every look at the clock costs 100 s: the box is spent at once
    timed = Poller(FakeTokens(), server, sink, state, state,
                   PollOptions(max_concurrent_mailboxes=1, deadline_seconds=1000), clock)
    first = timed.run([MailboxConfig(a) for a in addresses])
    reached = [m.address for m in first.mailboxes if m.skipped is None]
    assert 0 < len(reached) < 5
    assert all(not m.complete for m in first.mailboxes if m.skipped)
    assert not server.sessions[len(reached):]  # no login for a mailbox not reached
    second = timed.run([MailboxConfig(a) for a in addresses])
    assert next(m.address for m in second.mailboxes if m.skipped is None) not in reached


def stored_contents(sink: FakeSink) -> Counter[bytes]:
    return Counter(raw for raw, _ in sink.blobs.values())


def test_after_a_reset_old_messages_are_matched_one_to_one(world):
    """Same Message-ID with other content, a header twin, a byte-for-byte copy: all kept."""
    poller, server, sink, _ = world
    folder = server.folder(A)
    a = message(1)
    no_id = message(2, with_id=False)
    folder.append(a)
    folder.append(no_id)
    poller.run([MailboxConfig(A)])
    # Arrived after that poll, before the reset (the fake gives all one internal date).
    folder.append(a.replace(b"Subject: s1", b"Subject: corrected").replace(b"body 1", b"body B"))
    folder.append(no_id.replace(b"body 2", b"body of the twin"))
    folder.append(a)
    folder.renumber(uidvalidity=99)
    for n in range(3, 6):
        folder.append(message(n))
    report = poller.run([MailboxConfig(A)])
    result = report.mailboxes[0].folders[0]
    assert result.duplicates_skipped == 2 and result.delivered == 6
    assert stored_contents(sink) == Counter(folder.messages.values())
    assert poller.run([MailboxConfig(A)]).delivered == 0


def test_keys_of_an_older_format_never_match(world):
    poller, server, sink, _ = world
    folder = server.folder(A)
    folder.append(message(1))
    poller.run([MailboxConfig(A)])
    for _, metadata in sink.blobs.values():  # as an earlier version wrote it
        metadata["dedup_key"] = "mid-" + hashlib.sha256(b"<m1@contoso.com>").hexdigest()
    folder.renumber(uidvalidity=2)
    report = poller.run([MailboxConfig(A)])
    assert report.delivered == 1 and report.mailboxes[0].folders[0].duplicates_skipped == 0


def resync_in_two_runs(poller: Poller, clock: FakeClock) -> None:
    """A resync that stops at the time box after one message, then finishes."""
    poller.options = PollOptions(fetch_batch_size=1, deadline_seconds=10)
    clock.tick = 6.0  # the second look at the clock is past the deadline
    first = poller.run([MailboxConfig(A)])
    assert not first.mailboxes[0].complete
    clock.tick = 0.0
    poller.run([MailboxConfig(A)])


def test_a_resync_resumed_by_another_run_still_matches_one_to_one(world):
    poller, server, sink, state = world
    folder = server.folder(A)
    folder.append(message(1))
    poller.run([MailboxConfig(A)])
    folder.append(message(1))  # a copy, byte for byte, arriving in the same second
    folder.renumber(uidvalidity=9)
    assert isinstance(poller.clock, FakeClock)
    resync_in_two_runs(poller, poller.clock)
    assert state.get_checkpoint(A, "INBOX").last_uid == 2
    assert stored_contents(sink) == Counter(folder.messages.values())  # the copy was delivered


def test_a_resumed_resync_still_skips_messages_of_other_seconds(world):
    poller, server, sink, _ = world
    folder = server.folder(A)
    for n in range(3):
        folder.append(message(n), datetime(2026, 1, 1, 0, 0, n, tzinfo=UTC))
    poller.run([MailboxConfig(A)])
    folder.renumber(uidvalidity=9)
    assert isinstance(poller.clock, FakeClock)
    resync_in_two_runs(poller, poller.clock)
    assert len(sink.blobs) == 3


def test_a_streamed_message_expunged_before_it_is_read_is_not_delivered(world):
    poller, server, sink, state = world
    poller.options = PollOptions(large_message_bytes=1024)
    folder = server.folder(A)
    folder.append(message(1))
    big = folder.append(message(2) + b"x" * 5000)
    folder.append(message(3))
    server.after["fetch_info"] = lambda: folder.expunge(big)
    report = poller.run([MailboxConfig(A)])
    assert report.failed == [] and report.delivered == 2
    assert blob_name(A, "INBOX", 1, big) not in sink.blobs and sink.streamed == []
    assert state.get_checkpoint(A, "INBOX").last_uid == 3


def test_a_message_the_server_lists_but_does_not_send_is_not_passed(world):
    poller, server, sink, state = world
    folder = server.folder(A)
    for n in range(3):
        folder.append(message(n))
    folder.withheld = {2}
    report = poller.run([MailboxConfig(A)])
    assert not report.mailboxes[0].ok and "sent no data" in (report.mailboxes[0].error or "")
    assert state.get_checkpoint(A, "INBOX").last_uid == 1
    folder.withheld = set()
    poller.run([MailboxConfig(A)])
    assert stored_contents(sink) == Counter(folder.messages.values())


def test_a_streamed_message_the_server_does_not_send_is_not_passed(world):
    poller, server, sink, state = world
    poller.options = PollOptions(large_message_bytes=1024)
    folder = server.folder(A)
    big = folder.append(message(1) + b"x" * 5000)
    folder.withheld = {big}
    report = poller.run([MailboxConfig(A)])
    assert not report.mailboxes[0].ok and sink.blobs == {}
    assert state.get_checkpoint(A, "INBOX").last_uid == 0


def test_an_empty_message_is_delivered_as_an_empty_blob(world):
    poller, server, sink, _ = world
    server.folder(A).append(b"")
    assert poller.run([MailboxConfig(A)]).delivered == 1
    assert [raw for raw, _ in sink.blobs.values()] == [b""]


def test_a_message_left_out_of_the_size_fetch_is_still_delivered(world):
    poller, server, sink, state = world
    folder = server.folder(A)
    for n in range(3):
        folder.append(message(n))
    folder.unsized = {2}
    assert poller.run([MailboxConfig(A)]).delivered == 3
    assert stored_contents(sink) == Counter(folder.messages.values())


def test_streamed_messages_are_matched_one_to_one_too(world):
    poller, server, sink, _ = world
    poller.options = PollOptions(large_message_bytes=1024)
    folder = server.folder(A)
    big = message(1) + b"z" * 5000
    folder.append(big)
    poller.run([MailboxConfig(A)])
    folder.append(big)  # a copy
    folder.append(big.replace(b"body 1", b"body 2"))  # same Message-ID, other body
    folder.renumber(uidvalidity=5)
    report = poller.run([MailboxConfig(A)])
    assert report.mailboxes[0].folders[0].duplicates_skipped == 1 and report.delivered == 2
    assert stored_contents(sink) == Counter(folder.messages.values())


class HeldStateStore(FakeStateStore):
    """Checkpoint writes wait until ``release`` is set (at most 10 s): storage busy with uploads."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.fail_first = False
        self.waited_out = False

    def put_checkpoint(self, checkpoint):
        if checkpoint.last_uid > 0:  # not the starting checkpoint of a new folder
            self.waited_out = self.waited_out or not self.release.wait(10)
            if self.fail_first:
                self.fail_first = False
                raise StorageError("the table is not answering")
        return super().put_checkpoint(checkpoint)


def test_the_next_batch_is_fetched_while_a_checkpoint_write_is_still_running():
    server, sink, state = FakeServer(), FakeSink(), HeldStateStore()
    poller = Poller(FakeTokens(), server, sink, state, state,
                    PollOptions(fetch_batch_size=3, upload_concurrency=2), FakeClock())
    for n in range(9):
        server.folder(A).append(message(n))

    def before_write() -> None:  # a message of the third batch reached storage
        if len(sink.blobs) >= 6:
            state.release.set()

    sink.before_write = before_write
    [result] = poller.run([MailboxConfig(A)]).mailboxes
    assert result.ok and result.delivered == 9, result.error
    assert not state.waited_out  # the fetching went on while the write waited
    checkpoint = state.get_checkpoint(A, "INBOX")
    assert checkpoint is not None and checkpoint.last_uid == 9
    assert len(sink.blobs) == 9


def test_a_checkpoint_write_that_failed_behind_the_fetching_stops_the_folder_and_is_tried_again():
    server, sink, state = FakeServer(), FakeSink(), HeldStateStore()
    state.release.set()
    state.fail_first = True
    poller = Poller(FakeTokens(), server, sink, state, state,
                    PollOptions(fetch_batch_size=3, upload_concurrency=2), FakeClock())
    for n in range(30):
        server.folder(A).append(message(n))
    [result] = poller.run([MailboxConfig(A)]).mailboxes
    assert not result.ok and "the table is not answering" in (result.error or "")
    checkpoint = state.get_checkpoint(A, "INBOX")
    assert checkpoint is not None
    stored = checkpoint.last_uid
    assert stored == len(sink.blobs) < 30  # the retry at the end covered what was stored
    assert poller.run([MailboxConfig(A)]).delivered == 30 - stored
    assert len(sink.blobs) == 30


class SlowGoodbyeServer(FakeServer):
    """Each session's end (LOGOUT and its answer) waits for ``release`` (at most 10 s)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.waited_out = False
        self.ended: list[str] = []

    @contextmanager
    def open(self, address, token, *, deadline=None):
        if address == B:  # the next mailbox started while the first one's goodbye waits
            self.release.set()
        with super().open(address, token, deadline=deadline) as session:
            yield session
        self.waited_out = self.waited_out or not self.release.wait(10)
        self.ended.append(address)


def test_the_next_mailbox_starts_while_the_last_one_says_goodbye_and_the_run_waits_for_it():
    server, sink, state = SlowGoodbyeServer(), FakeSink(), FakeStateStore()
    poller = Poller(FakeTokens(), server, sink, state, state,
                    PollOptions(max_concurrent_mailboxes=1), FakeClock())
    server.folder(A).append(message(1))
    server.folder(B).append(message(2))
    report = poller.run([MailboxConfig(A), MailboxConfig(B)])
    assert report.delivered == 2 and not server.waited_out
    assert set(server.ended) == {A, B}  # both goodbyes said before the run returned
    assert server.open_now == {A: 0, B: 0}


class HealthNoting(FakeStateStore):
    """Notes "health" in ``order`` when a mailbox's health row is written."""

    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.order = order

    def record_result(self, result, *, at):
        self.order.append("health")
        return super().record_result(result, at=at)


def ending_slowly(server_class, order: list[str], goodbye: str):
    """A ``server_class`` whose sessions take 0.2 s to end, noting ``goodbye`` in ``order`` then."""

    class EndingSlowly(server_class):  # type: ignore[misc]
        @contextmanager
        def open(self, address, token, *, deadline=None):
            with super().open(address, token, deadline=deadline) as session:
                yield session
            time.sleep(0.2)
            order.append(goodbye)

    return EndingSlowly()


def test_a_pop3_mailbox_ends_its_session_before_its_health_is_written():
    # QUIT is when POP3 carries out deletions: the poll waits for it, unlike IMAP's LOGOUT.
    order: list[str] = []
    state, pop3 = HealthNoting(order), ending_slowly(FakePop3Server, order, "QUIT")
    poller = Poller(FakeTokens(), FakeServer(), FakeSink(), state, state, PollOptions(),
                    FakeClock(), pop3=pop3, pop3_checkpoints=state)
    pop3.deliver(A, "u1", message(1))
    [result] = poller.run([MailboxConfig(A, protocol="pop3")]).mailboxes
    assert result.delivered == 1, result.error
    assert order == ["QUIT", "health"]


def test_an_imap_mailbox_writes_its_health_without_waiting_for_the_logout_answer():
    order: list[str] = []
    server, state = ending_slowly(FakeServer, order, "LOGOUT"), HealthNoting(order)
    poller = Poller(FakeTokens(), server, FakeSink(), state, state, PollOptions(), FakeClock())
    server.folder(A).append(message(1))
    assert poller.run([MailboxConfig(A)]).delivered == 1
    assert order == ["health", "LOGOUT"]  # and the run waited for the LOGOUT


def test_a_checkpoint_write_that_failed_is_made_again_at_the_end_even_if_nothing_moved_since():
    from shared.folder_flow import FolderFlow, FolderTools
    from shared.poll import SilentObserver
    from shared.time_box import TimeBox

    written: list[int] = []

    def write(through: int) -> None:
        written.append(through)
        if len(written) == 1:
            raise StorageError("the table is not answering")

    tools = FolderTools(FakeSink(), FakeStateStore(), PollOptions(), FakeClock(), SilentObserver())
    flow = FolderFlow(tools, address=A, result=FolderResult("INBOX"), time_box=TimeBox(1e9),
                      start=0, stored=lambda _uid, _through: None, write=write, what="write")
    flow.prefix.expect([1, 2])
    flow.prefix.done(1)
    flow.prefix.done(2)
    flow.save_soon()  # the write of 2 starts, and fails
    raised = None
    for _ in range(500):  # while it runs, nothing more starts and nothing is raised
        try:
            flow.save_soon()
        except StorageError as e:
            raised = e  # the failure comes out; the prefix has not moved since
            break
        time.sleep(0.01)
    assert raised is not None and written == [2]
    flow.close(None, where="ops/INBOX")
    assert written == [2, 2]
