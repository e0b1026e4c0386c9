"""After delivery against in-memory ports: each delivered message acted on once, none without its blob."""

from __future__ import annotations

from typing import Any

import pytest

from shared.delivery_actions import KEEP, Action, ActionState, parse_action
from shared.naming import blob_name
from shared.poll import Poller, PollOptions
from shared.settings import MailboxConfig
from tests.fakes import FakeClock, FakeServer, FakeSink, FakeStateStore, FakeTokens

A = "ops@contoso.com"
SEEN, DELETED = "\\Seen", "\\Deleted"


def message(n: int) -> bytes:
    return (f"Message-ID: <m{n}@contoso.com>\r\nFrom: a@b.c\r\nSubject: s{n}\r\n"
            f"Date: Sat, 28 Nov 2026 10:{n % 60:02d}:00 +0000\r\n\r\nbody {n}\r\n").encode()


class World:
    def __init__(self, action: str = "keep", **options: Any) -> None:
        self.server, self.sink, self.state, self.clock = FakeServer(), FakeSink(), FakeStateStore(), FakeClock()
        self.poller = Poller(FakeTokens(), self.server, self.sink, self.state, self.state,
                             PollOptions(fetch_batch_size=3, upload_concurrency=2,
                                         after_delivery=parse_action(action), **options),
                             self.clock, action_states=self.state)

    def inbox(self, count: int, start: int = 0) -> None:
        for n in range(start, start + count):
            self.server.folder(A).append(message(n))

    def run(self, mailbox: MailboxConfig | None = None):
        [result] = self.poller.run([mailbox or MailboxConfig(A)]).mailboxes
        return result

    def commands(self) -> list[str]:
        return self.server.sessions[-1].commands

    def stored_bodies(self) -> list[bytes]:
        return sorted(raw for raw, _ in self.sink.blobs.values())


@pytest.mark.parametrize("action", ["seen", "move:Archive/mailferry", "delete"])
def test_a_poll_delivers_and_acts_and_a_second_poll_does_neither(action):
    world = World(action)
    world.inbox(7)
    first = world.run()
    assert first.ok and first.delivered == 7 and first.acted == 7
    inbox = world.server.folder(A)
    if action == "seen":
        assert all(inbox.flags[u] == {SEEN} for u in inbox.messages) and len(inbox.messages) == 7
    elif action == "delete":
        assert inbox.messages == {}
    else:
        assert sorted(world.server.folder(A, "Archive/mailferry").messages.values()) == world.stored_bodies()
        assert inbox.messages == {}
    second = world.run()
    assert second.ok and second.delivered == 0 and second.acted == 0
    # Nothing delivered since the last actions: the phase sends no command at all.
    assert "SELECT" not in world.commands() and "UID STORE" not in world.commands()
    assert len(world.sink.blobs) == 7


def test_keep_reads_only_examine_and_peek():
    world = World("keep")
    world.inbox(3)
    assert world.run().acted == 0
    assert set(world.commands()) == {"EXAMINE", "UID SEARCH", "UID FETCH"}
    assert all(not flags for flags in world.server.folder(A).flags.values())
    assert world.state.action_rows == {}


def test_seen_acts_on_unseen_messages_once_and_leaves_one_a_person_marks_unread_again():
    world = World("seen")
    world.inbox(3)
    world.server.folder(A).flags[2].add(SEEN)  # read by a person before delivery
    assert world.run().acted == 2
    world.server.folder(A).flags[1].discard(SEEN)  # marked unread again afterwards
    world.inbox(1, start=3)
    assert world.run().acted == 1
    assert SEEN not in world.server.folder(A).flags[1]


def test_a_message_without_its_blob_is_never_acted_on():
    world = World("delete")
    world.inbox(3)
    world.poller.options = PollOptions(fetch_batch_size=3, after_delivery=KEEP)
    world.run()  # delivered and kept
    del world.sink.blobs[blob_name(A, "INBOX", 1, 2)]  # e.g. a lifecycle rule removed it
    world.poller.options = PollOptions(fetch_batch_size=3, after_delivery=parse_action("delete"))
    result = world.run()
    assert result.acted == 2 and list(world.server.folder(A).messages) == [2]
    state = world.state.get_action_state(A, "INBOX")
    assert state is not None and state.without_blob == 1


def test_delete_expunges_only_its_own_messages_never_ones_another_client_flagged():
    world = World("delete")
    world.inbox(3)
    inbox = world.server.folder(A)

    def another_client_flags_a_new_message() -> None:
        uid = inbox.append(message(99))
        inbox.flags[uid].add(DELETED)  # flagged by someone else, not expunged (yet)

    world.server.after["uid_store_flags"] = another_client_flags_a_new_message
    assert world.run().acted == 3
    assert list(inbox.messages.values()) == [message(99)]


def test_the_move_target_is_created_and_never_polled():
    world = World("move:Done")
    world.inbox(2)
    world.server.folder(A, "Other").append(message(5))
    result = world.run(MailboxConfig(A, ("*",)))
    assert sorted(f.folder for f in result.folders) == ["INBOX", "Other"]
    assert len(world.server.folder(A, "Done").messages) == 3
    again = world.run(MailboxConfig(A, ("*",)))
    assert "Done" not in [f.folder for f in again.folders] and again.delivered == 0


def test_move_without_move_copies_flags_and_expunges_by_uid():
    world = World("move:Archive")
    world.server.offered = frozenset({"IMAP4REV1", "UIDPLUS"})
    world.inbox(5)
    assert world.run().acted == 5
    assert len(world.server.folder(A, "Archive").messages) == 5 and world.server.folder(A).messages == {}
    assert "UID MOVE" not in world.commands() and "UID COPY" in world.commands()
    state = world.state.get_action_state(A, "INBOX")
    assert state is not None and state.copy_uids == ()


class Died(BaseException):
    """A run killed where it stands (BaseException: nothing in the poll catches it)."""


def die() -> None:
    raise Died


@pytest.mark.parametrize("large", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("after", ["uid_copy", "uid_store_flags", "uid_expunge"])
def test_a_move_without_move_interrupted_anywhere_copies_each_message_once(after, large):
    # Streamed: every message is large, so the recovery reads each one piece by piece.
    world = World("move:Archive", **({"large_message_bytes": 16} if large else {}))
    world.server.offered = frozenset({"IMAP4REV1", "UIDPLUS"})
    world.inbox(7)
    world.server.after[after] = die
    with pytest.raises(Died):
        world.run()
    world.run()
    world.run()
    archive = world.server.folder(A, "Archive")
    assert sorted(archive.messages.values()) == world.stored_bodies()
    assert world.server.folder(A).messages == {}
    assert len(world.sink.blobs) == 7


@pytest.mark.parametrize("action,after", [("move:Archive", "uid_move"), ("delete", "uid_expunge"),
                                          ("seen", "uid_store_flags")])
def test_a_run_dying_after_acting_and_before_its_state_acts_on_nothing_twice(action, after):
    world = World(action)
    world.inbox(7)
    world.server.after[after] = die
    with pytest.raises(Died):
        world.run()
    world.run()
    world.inbox(2, start=7)
    world.run()
    if action == "move:Archive":
        assert sorted(world.server.folder(A, "Archive").messages.values()) == world.stored_bodies()
    if action == "seen":
        assert all(SEEN in f for f in world.server.folder(A).flags.values())
    else:
        assert world.server.folder(A).messages == {}
    assert len(world.sink.blobs) == 9


def test_the_time_box_stops_the_actions_between_batches_and_the_next_run_finishes():
    world = World("delete")
    world.inbox(9)
    world.poller.options = PollOptions(fetch_batch_size=3, after_delivery=KEEP)
    world.run()
    world.poller.options = PollOptions(fetch_batch_size=3, deadline_seconds=60,
                                       after_delivery=parse_action("delete"))

    def time_passes() -> None:  # the first batch takes the rest of the time box
        world.clock.seconds += 60

    world.server.after["uid_store_flags"] = time_passes
    cut = world.run()
    assert not cut.complete and cut.acted == 3 and len(world.server.folder(A).messages) == 6
    rest = world.run()
    assert rest.complete and rest.acted == 6 and world.server.folder(A).messages == {}


def test_after_a_uidvalidity_reset_messages_skipped_as_delivered_are_acted_on():
    world = World("move:Archive")
    world.inbox(4)
    world.poller.options = PollOptions(after_delivery=KEEP)
    world.run()
    world.server.folder(A).renumber(77)
    world.poller.options = PollOptions(after_delivery=parse_action("move:Archive"))
    result = world.run()
    assert result.folders[0].duplicates_skipped == 4 and result.delivered == 0 and result.acted == 4
    assert world.server.folder(A).messages == {} and len(world.sink.blobs) == 4


def test_delete_without_uidplus_is_a_folder_error_and_mail_is_still_delivered():
    world = World("delete")
    world.server.offered = frozenset({"IMAP4REV1", "MOVE"})
    world.inbox(2)
    world.server.folder(A, "Other").append(message(9))
    result = world.run(MailboxConfig(A, ("INBOX", "Other")))
    assert result.ok and result.delivered == 3 and result.acted == 0
    assert {f.folder for f in result.folder_errors} == {"INBOX", "Other"}
    assert "UIDPLUS" in (result.folder_errors[0].error or "")
    assert len(world.server.folder(A).messages) == 2


def test_another_run_acting_meanwhile_is_left_to_it():
    world = World("seen")
    world.inbox(2)
    # Another run writes the folder's action row while this one is acting.
    def another_run_writes() -> None:
        world.state.put_action_state(ActionState(A, "INBOX", 1))

    world.server.after["uid_store_flags"] = another_run_writes
    result = world.run()
    assert result.ok and result.folder_errors == [] and result.acted == 2


def test_per_mailbox_and_per_folder_actions_override_the_setting():
    world = World("keep")
    world.inbox(2)
    world.server.folder(A, "Invoices").append(message(7))
    mailbox = MailboxConfig(A, ("INBOX", "Invoices"), after_delivery=Action("seen"),
                            folder_actions=(("Invoices", Action("delete")),))
    world.run(mailbox)
    assert all(f == {SEEN} for f in world.server.folder(A).flags.values())
    assert world.server.folder(A, "Invoices").messages == {}


def test_a_folder_created_between_polls_is_picked_up_and_one_gone_is_noted_not_failed():
    world = World("keep")
    world.inbox(1)
    world.server.folder(A, "Projects").append(message(2))
    mailbox = MailboxConfig(A, ("*",))
    assert world.run(mailbox).delivered == 2
    world.server.folder(A, "New").append(message(3))
    del world.server.mailboxes[A]["Projects"]
    result = world.run(mailbox)
    assert result.ok and result.delivered == 1 and result.folder_errors == []
    [gone] = result.folders_gone
    assert gone.folder == "Projects"
    assert "Projects (gone since" in (world.state.health[A].folders_gone or "")
    assert [f.folder for f in world.run(mailbox).folders_gone] == ["Projects"]


def test_a_listed_move_target_is_not_polled_and_says_why():
    world = World("move:Archive")
    world.inbox(1)
    world.server.folder(A, "Archive").append(message(3))
    result = world.run(MailboxConfig(A, ("INBOX", "Archive")))
    [note] = result.folder_errors
    assert note.folder == "Archive" and "moves delivered mail" in (note.error or "")
    assert result.delivered == 1
