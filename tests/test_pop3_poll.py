"""The POP3 poll against in-memory ports: end state, not calls."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from shared.naming import DIGEST_BYTES, pop3_blob_name, uidl_digest
from shared.poll import Poller, PollOptions
from shared.settings import MailboxConfig
from tests.fakes import (
    FakeClock,
    FakePop3Server,
    FakeServer,
    FakeSink,
    FakeStateStore,
    FakeTokens,
)

A, B = "ops@contoso.com", "billing@contoso.com"
POP3_A = MailboxConfig(A, ("INBOX",), "pop3")


def message(n: int) -> bytes:
    return (f"Message-ID: <p{n}@contoso.com>\r\nFrom: a@b.c\r\nSubject: s{n}\r\n\r\n"
            f"body {n}\r\n.leading dot\r\n").encode()


def uidl(n: int) -> str:
    return f"UID{n:04d}-AQMkAD"


class World:
    def __init__(self) -> None:
        self.imap, self.pop3 = FakeServer(), FakePop3Server()
        self.sink, self.state, self.clock = FakeSink(), FakeStateStore(), FakeClock()
        self.poller = Poller(FakeTokens(), self.imap, self.sink, self.state, self.state,
                             PollOptions(fetch_batch_size=3, upload_concurrency=2), self.clock,
                             pop3=self.pop3, pop3_checkpoints=self.state)

    def seed(self, numbers: range, address: str = A) -> None:
        for n in numbers:
            self.pop3.deliver(address, uidl(n), message(n))

    def stored(self) -> dict[str, bytes]:
        return {name: raw for name, (raw, _) in self.sink.blobs.items()}

    def expected(self, address: str = A) -> dict[str, bytes]:
        return {pop3_blob_name(address, u): raw for u, raw in self.pop3.maildrops[address]}

    def checkpointed(self, address: str = A) -> frozenset[bytes]:
        checkpoint = self.state.get_pop3_checkpoint(address)
        return checkpoint.delivered if checkpoint else frozenset()


@pytest.fixture
def world() -> World:
    return World()


def digests(numbers: range | list[int]) -> frozenset[bytes]:
    return frozenset(uidl_digest(uidl(n)) for n in numbers)


def test_delivers_every_message_once_and_a_second_run_delivers_nothing(world):
    world.seed(range(7))
    first = world.poller.run([POP3_A])
    writes = (world.sink.writes, world.state.writes)
    second = world.poller.run([POP3_A])
    assert first.failed == [] and first.delivered == 7 and second.delivered == 0
    assert world.stored() == world.expected()
    assert world.checkpointed() == digests(range(7))
    # Nothing new: one UIDL, no RETR, no blob or checkpoint write.
    assert world.pop3.sessions[-1].commands == ["UIDL"]
    assert (world.sink.writes, world.state.writes) == writes


def test_blob_metadata_names_the_uidl(world):
    world.seed(range(1))
    world.poller.run([POP3_A])
    [(name, (raw, metadata))] = world.sink.blobs.items()
    assert name == f"{A}/INBOX/pop3/{uidl(0)}.eml"
    assert metadata["uidl"] == uidl(0) and metadata["folder"] == "INBOX"
    assert metadata["message_id"] == "<p0@contoso.com>" and metadata["size"] == str(len(raw))
    assert metadata["dedup_key"].startswith("v2-")
    assert "uid" not in metadata and "uidvalidity" not in metadata


def test_mail_arriving_between_runs_is_picked_up(world):
    world.seed(range(2))
    world.poller.run([POP3_A])
    world.seed(range(2, 5))
    report = world.poller.run([POP3_A])
    assert report.delivered == 3
    assert world.stored() == world.expected()
    assert world.pop3.sessions[-1].commands == ["UIDL", "RETR", "RETR", "RETR"]


def test_messages_removed_from_the_maildrop_leave_the_checkpoint(world):
    world.seed(range(5))
    world.poller.run([POP3_A])
    world.pop3.remove(A, uidl(1))
    world.pop3.remove(A, uidl(3))
    assert world.poller.run([POP3_A]).delivered == 0
    assert world.checkpointed() == digests([0, 2, 4])
    world.pop3.remove(A, uidl(0))
    world.seed(range(5, 6))
    assert world.poller.run([POP3_A]).delivered == 1
    assert world.checkpointed() == digests([2, 4, 5])
    assert len(world.sink.blobs) == 6  # removing mail from the server never removes blobs


def test_a_run_dying_mid_batch_then_rerun_delivers_each_message_exactly_once(world):
    world.seed(range(10))
    world.sink.fail_after = 4  # storage fails partway through the second batch
    failed = world.poller.run([POP3_A])
    assert not failed.mailboxes[0].ok and "storage went away" in (failed.mailboxes[0].error or "")
    # Every message whose blob exists is in the checkpoint, the failed batch's too.
    stored = {name for name in world.sink.blobs}
    assert world.checkpointed() == digests([n for n in range(10) if pop3_blob_name(A, uidl(n)) in stored])
    partial = len(world.sink.blobs)
    assert 4 <= partial < 10
    world.sink.fail_after = None
    rerun = world.poller.run([POP3_A])
    result = rerun.mailboxes[0].folders[0]
    assert rerun.failed == []
    assert result.delivered + partial == 10 and result.already_present == 0
    assert world.stored() == world.expected()
    assert world.checkpointed() == digests(range(10))


def test_time_box_stops_between_batches_and_the_next_run_resumes(world):
    world.seed(range(9))
    world.poller.options = PollOptions(fetch_batch_size=3, deadline_seconds=10)
    world.clock.tick = 3.0  # each look at the clock costs 3 s: room for about one batch
    first = world.poller.run([POP3_A])
    assert first.failed == [] and not first.mailboxes[0].complete
    assert 0 < first.delivered < 9
    assert world.checkpointed() == digests(range(first.delivered))
    world.clock.tick = 0.0
    second = world.poller.run([POP3_A])
    assert second.mailboxes[0].complete and first.delivered + second.delivered == 9
    assert world.stored() == world.expected()


def test_pop3_and_imap_mailboxes_in_one_poll_and_a_refused_one_fails_alone(world):
    world.seed(range(2))
    world.seed(range(1), address=B)
    world.imap.folder("imap@contoso.com").append(message(99))
    world.pop3.refused.add(B)
    report = world.poller.run([POP3_A, MailboxConfig(B, ("INBOX",), "pop3"),
                               MailboxConfig("imap@contoso.com")])
    by_address = {m.address: m for m in report.mailboxes}
    assert by_address[A].ok and by_address[A].delivered == 2
    assert by_address["imap@contoso.com"].ok and by_address["imap@contoso.com"].delivered == 1
    assert by_address[B].error_type == "AuthenticationError"
    assert world.state.health[B].consecutive_failures == 1
    assert world.state.get_pop3_checkpoint(B) is None


class OvertakingSink(FakeSink):
    """A sink during whose first write another run advances the POP3 checkpoint."""

    def __init__(self, state: FakeStateStore) -> None:
        super().__init__()
        self.state = state

    def create(self, name: str, raw: bytes, metadata: Mapping[str, str]) -> bool:
        current = self.state.get_pop3_checkpoint(A)
        if current is not None and self.writes == 0:
            self.state.put_pop3_checkpoint(current)
        return super().create(name, raw, metadata)


def test_a_run_overtaken_by_another_yields_and_nothing_is_lost(world):
    world.seed(range(2))
    world.poller.run([POP3_A])
    world.sink = OvertakingSink(world.state)
    world.poller.sink = world.sink
    world.seed(range(2, 4))
    report = world.poller.run([POP3_A])
    [result] = report.mailboxes
    assert result.ok and result.folders[0].yielded  # yielding is not a failure
    # The blobs it wrote are counted (health), though the checkpoint stayed with the other run.
    assert report.delivered == 2 and world.checkpointed() == digests(range(2))
    assert world.poller.run([POP3_A]).delivered == 0  # the blobs exist: already present
    assert world.checkpointed() == digests(range(4))
    assert set(world.sink.blobs) == {pop3_blob_name(A, uidl(n)) for n in (2, 3)}


def test_uidl_digests_are_compact_and_blob_names_stay_in_their_prefix():
    assert len(uidl_digest("anything")) == DIGEST_BYTES
    assert uidl_digest("a") != uidl_digest("b")
    name = pop3_blob_name("Ops@Contoso.com", "../../etc/x y")
    assert name.startswith("ops@contoso.com/INBOX/pop3/") and name.count("/") == 3


def large(n: int, size: int) -> bytes:
    """A message of ``size`` bytes whose lines start with dots, so stuffing matters."""
    line = f".{n} line of a large message\r\n".encode()
    return message(n) + line * (size // len(line))


def test_large_messages_are_streamed_into_their_blobs_byte_for_byte(world):
    world.poller.options = PollOptions(fetch_batch_size=3, upload_concurrency=2,
                                       large_message_bytes=4096)
    for n in range(5):
        world.pop3.deliver(A, uidl(n), large(n, 20_000) if n % 2 else message(n))

    def tag_thread() -> None:
        """Stands for the Functions invocation's ThreadStart."""

    result = world.poller.run([POP3_A], on_thread_start=tag_thread)
    assert result.failed == [] and result.delivered == 5
    assert world.sink.stream_thread_starts == [tag_thread, tag_thread]
    assert world.stored() == world.expected()
    assert sorted(world.sink.streamed) == sorted(pop3_blob_name(A, uidl(n)) for n in (1, 3))
    for n in range(5):  # the same metadata whichever way a message was read
        _, metadata = world.sink.blobs[pop3_blob_name(A, uidl(n))]
        assert metadata["size"] == str(len(world.expected()[pop3_blob_name(A, uidl(n))]))
        assert metadata["message_id"] == f"<p{n}@contoso.com>" and metadata["uidl"] == uidl(n)
    assert world.checkpointed() == digests(range(5))


def test_a_large_message_cut_mid_retr_is_not_stored_and_the_reconnect_delivers_it_whole(world):
    world.poller.options = PollOptions(fetch_batch_size=3, large_message_bytes=4096)
    world.pop3.deliver(A, uidl(0), message(0))
    world.pop3.deliver(A, uidl(1), large(1, 20_000))
    world.pop3.deliver(A, uidl(2), message(2))
    world.pop3.cut_inside = True
    [result] = world.poller.run([POP3_A]).mailboxes
    assert result.ok and result.delivered == 3, result.error
    assert len(world.pop3.sessions) == 2 and world.pop3.sessions[0].dead
    assert world.stored() == world.expected()  # the first attempt left nothing behind
    assert world.sink.streamed == [pop3_blob_name(A, uidl(1))]
