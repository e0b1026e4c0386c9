"""POP3 `delete` against in-memory ports: DELE only with the blob stored, committed only by QUIT."""

from __future__ import annotations

from typing import Any

from shared.delivery_actions import Action, parse_action
from shared.naming import pop3_blob_name
from shared.poll import Poller, PollOptions
from shared.settings import MailboxConfig
from tests.fakes import FakeClock, FakePop3Server, FakeServer, FakeSink, FakeStateStore, FakeTokens

A = "ops@contoso.com"


def message(n: int) -> bytes:
    return f"Message-ID: <p{n}@contoso.com>\r\nSubject: s{n}\r\n\r\nbody {n}\r\n".encode()


class World:
    def __init__(self, action: str = "delete", **options: Any) -> None:
        self.pop3, self.sink, self.state, self.clock = FakePop3Server(), FakeSink(), FakeStateStore(), FakeClock()
        self.poller = Poller(FakeTokens(), FakeServer(), self.sink, self.state, self.state,
                             PollOptions(fetch_batch_size=3, upload_concurrency=2,
                                         after_delivery=parse_action(action), **options),
                             self.clock, pop3=self.pop3, pop3_checkpoints=self.state, action_states=self.state)

    def seed(self, numbers: range) -> None:
        for n in numbers:
            self.pop3.deliver(A, f"UID{n:04d}", message(n))

    def run(self, mailbox: MailboxConfig | None = None):
        [result] = self.poller.run([mailbox or MailboxConfig(A, protocol="pop3")]).mailboxes
        return result


def test_delete_removes_each_delivered_message_at_quit_and_the_next_poll_finds_nothing():
    world = World()
    world.seed(range(5))
    first = world.run()
    assert first.ok and first.delivered == 5 and first.acted == 5
    assert world.pop3.maildrops[A] == [] and len(world.sink.blobs) == 5
    second = world.run()
    assert second.delivered == 0 and second.acted == 0
    assert world.pop3.sessions[-1].commands == ["UIDL", "UIDL"]


def test_a_run_killed_before_quit_deletes_nothing_and_the_next_finds_the_blobs_there():
    world = World()
    world.seed(range(4))
    world.pop3.dies_before_quit = True
    assert world.run().acted == 4
    assert len(world.pop3.maildrops[A]) == 4  # marked, never committed
    world.pop3.dies_before_quit = False
    again = world.run()
    assert again.delivered == 0 and again.folders[0].already_present == 0 and again.acted == 4
    assert world.pop3.maildrops[A] == [] and len(world.sink.blobs) == 4


def test_only_messages_whose_blob_is_stored_are_deleted():
    world = World()
    world.seed(range(3))
    world.poller.options = PollOptions(after_delivery=Action("keep"))
    world.run()
    del world.sink.blobs[pop3_blob_name(A, "UID0001")]  # e.g. a lifecycle rule removed it
    world.poller.options = PollOptions(after_delivery=parse_action("delete"))
    result = world.run()
    assert result.acted == 2 and result.folders[0].actions_pending == 1
    assert [u for u, _ in world.pop3.maildrops[A]] == ["UID0001"]


def test_the_time_box_leaves_the_rest_for_the_next_run():
    world = World(deadline_seconds=1000)
    world.seed(range(120))
    world.poller.options = PollOptions(fetch_batch_size=200, after_delivery=Action("keep"))
    world.run()
    world.poller.options = PollOptions(deadline_seconds=4, after_delivery=parse_action("delete"))
    world.clock.tick = 1.0
    cut = world.run()
    assert not cut.complete and 0 < cut.acted < 120
    world.clock.tick = 0.0
    world.run()
    assert world.pop3.maildrops[A] == []


def test_pop3_cannot_mark_seen_or_move_and_says_so():
    world = World("move:Archive")
    world.seed(range(2))
    result = world.run()
    assert result.ok and result.delivered == 2 and len(world.pop3.maildrops[A]) == 2
    [problem] = result.folder_errors
    assert "POP3 can only keep or delete" in (problem.error or "")
