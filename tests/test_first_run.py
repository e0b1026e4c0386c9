"""How much history a first poll takes (FIRST_RUN), against in-memory ports: end state."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from shared.errors import ConfigurationError
from shared.first_run import describe
from shared.history_scope import ALL, NEW, FirstRunScope, parse_first_run
from shared.model import Checkpoint
from shared.naming import blob_name, pop3_blob_name
from shared.poll import Poller, PollOptions
from shared.settings import MailboxConfig, Settings, parse_mailboxes
from tests.fakes import FakeClock, FakePop3Server, FakeServer, FakeSink, FakeStateStore, FakeTokens

A, B = "ops@contoso.com", "billing@contoso.com"
# FakeClock.now(): the moment the first poll runs.
FIRST_POLL = datetime(2026, 11, 28, tzinfo=UTC)
OLD = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LATER = FIRST_POLL + timedelta(hours=5)


def since(day: str) -> FirstRunScope:
    return parse_first_run(f"since:{day}")


def message(n: int) -> bytes:
    return f"Message-ID: <h{n}@contoso.com>\r\nSubject: s{n}\r\n\r\nbody {n}\r\n".encode()


class World:
    def __init__(self, scope: FirstRunScope = ALL) -> None:
        self.server, self.sink, self.state = FakeServer(), FakeSink(), FakeStateStore()
        self.pop3 = FakePop3Server()
        self.clock = FakeClock()
        self.poller = Poller(FakeTokens(), self.server, self.sink, self.state, self.state,
                             PollOptions(fetch_batch_size=3, upload_concurrency=2, first_run=scope),
                             self.clock, pop3=self.pop3, pop3_checkpoints=self.state)
        self.n = 0

    def add(self, arrived: datetime, folder: str = "INBOX", address: str = A) -> int:
        self.n += 1
        return self.server.folder(address, folder).append(message(self.n), arrived)

    def delivered(self, folder: str = "INBOX", address: str = A) -> set[bytes]:
        prefix = blob_name(address, folder, 1, 1).rsplit("/", 2)[0] + "/"
        return {raw for name, (raw, _) in self.sink.blobs.items() if name.startswith(prefix)}

    def checkpoint(self, folder: str = "INBOX") -> Checkpoint:
        stored = self.state.get_checkpoint(A, folder)
        assert stored is not None
        return stored

    def raw(self, uids: list[int], folder: str = "INBOX") -> set[bytes]:
        messages = self.server.folder(A, folder).messages
        return {messages[u] for u in uids}


# --- new ----------------------------------------------------------------------------------


def test_new_takes_nothing_that_was_there_and_everything_that_arrives_after():
    world = World(NEW)
    for _ in range(50):
        world.add(OLD)
    first = world.poller.run([MailboxConfig(A)])
    assert first.failed == [] and first.delivered == 0 and world.sink.blobs == {}
    checkpoint = world.checkpoint()
    assert checkpoint.last_uid == 50 and checkpoint.first_run == "new"
    assert checkpoint.not_before == FIRST_POLL
    arrived = [world.add(LATER) for _ in range(4)]
    assert world.poller.run([MailboxConfig(A)]).delivered == 4
    assert world.delivered() == world.raw(arrived)
    assert world.poller.run([MailboxConfig(A)]).delivered == 0


def test_new_on_an_empty_folder_delivers_what_arrives():
    world = World(NEW)
    world.server.folder(A)
    assert world.poller.run([MailboxConfig(A)]).delivered == 0
    uid = world.add(LATER)
    assert world.poller.run([MailboxConfig(A)]).delivered == 1
    assert world.delivered() == world.raw([uid])


def test_after_a_reset_under_new_old_mail_stays_out_and_nothing_is_lost_or_doubled():
    world = World(NEW)
    for _ in range(20):
        world.add(OLD)
    world.poller.run([MailboxConfig(A)])
    delivered_before = [world.add(LATER) for _ in range(3)]
    world.poller.run([MailboxConfig(A)])
    assert world.delivered() == world.raw(delivered_before)
    folder = world.server.folder(A)
    # Arrived after the last poll, before the reset: not delivered yet.
    pending = world.add(LATER + timedelta(minutes=1))
    pending_raw = folder.messages[pending]
    folder.renumber(uidvalidity=77)
    report = world.poller.run([MailboxConfig(A)])
    result = report.mailboxes[0].folders[0]
    assert report.failed == [] and result.resynced
    assert result.delivered == 1 and result.duplicates_skipped == 3
    everything = {raw for raw, _ in world.sink.blobs.values()}
    assert everything == {folder.messages[u] for u in folder.messages
                          if folder.arrived[u] >= FIRST_POLL}
    assert pending_raw in everything and len(world.sink.blobs) == 4
    checkpoint = world.checkpoint()
    assert checkpoint.first_run == "new" and checkpoint.not_before == FIRST_POLL
    assert checkpoint.last_uid == max(folder.messages)
    assert world.poller.run([MailboxConfig(A)]).delivered == 0


def test_a_message_of_the_cut_off_second_counts_as_in_scope_after_a_reset():
    world = World(NEW)
    world.add(FIRST_POLL - timedelta(seconds=1))
    world.poller.run([MailboxConfig(A)])
    same_second = world.add(FIRST_POLL)
    world.server.folder(A).renumber(uidvalidity=5)
    assert world.poller.run([MailboxConfig(A)]).delivered == 1
    assert world.delivered() == world.raw([same_second])


def test_changing_the_setting_later_never_redelivers():
    world = World(NEW)
    for _ in range(5):
        world.add(OLD)
    world.poller.run([MailboxConfig(A)])
    world.poller.options = PollOptions(first_run=ALL)
    assert world.poller.run([MailboxConfig(A)]).delivered == 0
    world.server.folder(A).renumber(uidvalidity=9)  # even a reset keeps the scope it began with
    assert world.poller.run([MailboxConfig(A)]).delivered == 0
    assert world.checkpoint().first_run == "new"
    # And the other way round: a folder that took everything keeps taking everything.
    world.poller.options = PollOptions(first_run=ALL)
    world.add(OLD, address=B)
    world.poller.run([MailboxConfig(B)])
    world.poller.options = PollOptions(first_run=NEW)
    world.add(OLD, address=B)
    assert world.poller.run([MailboxConfig(B)]).delivered == 1


def test_a_mailbox_scope_overrides_the_setting_and_a_new_folder_takes_the_scope_of_its_time():
    world = World(NEW)
    world.add(OLD)
    world.add(OLD, address=B)
    report = world.poller.run([MailboxConfig(A), MailboxConfig(B, first_run=ALL)])
    assert {m.address: m.delivered for m in report.mailboxes} == {A: 0, B: 1}
    world.add(OLD, folder="Archive")
    report = world.poller.run([MailboxConfig(A, ("INBOX", "Archive"))])
    assert report.delivered == 0
    assert world.checkpoint("Archive").first_run == "new"


# --- since --------------------------------------------------------------------------------


def test_since_delivers_exactly_the_mail_received_on_or_after_the_day_whatever_its_uid():
    world = World(since("2026-06-15"))
    cut = datetime(2026, 6, 15, tzinfo=UTC)
    dates = [OLD, cut + timedelta(days=3), cut - timedelta(seconds=1), cut, OLD,
             cut + timedelta(days=40), cut - timedelta(days=1), OLD]
    uids = [world.add(when) for when in dates]
    report = world.poller.run([MailboxConfig(A)])
    expected = [uid for uid, when in zip(uids, dates, strict=True) if when >= cut]
    assert report.failed == [] and report.delivered == len(expected) == 3
    assert world.delivered() == world.raw(expected)
    checkpoint = world.checkpoint()
    assert checkpoint.first_run == "since:2026-06-15" and checkpoint.not_before == cut
    # Then UIDs as usual: a message moved in later with an old date is delivered.
    moved_in = world.add(OLD)
    assert world.poller.run([MailboxConfig(A)]).delivered == 1
    assert moved_in in {int(n.rsplit("/", 1)[1][:-4]) for n in world.sink.blobs}


def test_since_reads_the_day_in_utc_whatever_zone_the_server_wrote():
    world = World(since("2026-06-15"))
    east = timezone(timedelta(hours=5))
    west = timezone(timedelta(hours=-5))
    # 15 June on the server's calendar, but 14 June 21:00 UTC: before the day.
    early = world.add(datetime(2026, 6, 15, 2, 0, tzinfo=east))
    # 14 June on the server's calendar, but 15 June 02:00 UTC: on the day.
    late = world.add(datetime(2026, 6, 14, 21, 0, tzinfo=west))
    assert world.poller.run([MailboxConfig(A)]).delivered == 1
    assert world.delivered() == world.raw([late]) and early != late


def test_since_searches_by_date_instead_of_reading_every_old_message():
    world = World(since("2026-06-15"))
    for _ in range(10):
        world.add(OLD)
    recent = world.add(datetime(2026, 7, 1, tzinfo=UTC))
    for _ in range(20):
        world.add(OLD)
    world.poller.run([MailboxConfig(A)])
    session = world.server.sessions[-1]
    assert "UID SEARCH SINCE" in session.commands
    assert world.delivered() == world.raw([recent])
    # The old ones after the last message in scope are passed on the next poll; from then on
    # a poll neither searches by date nor fetches.
    world.poller.run([MailboxConfig(A)])
    assert world.checkpoint().last_uid == 31
    world.poller.run([MailboxConfig(A)])
    assert world.server.sessions[-1].commands == ["EXAMINE", "UID SEARCH"]
    assert world.delivered() == world.raw([recent])


def test_a_since_pass_cut_by_the_time_box_resumes_and_delivers_each_message_once():
    world = World(since("2026-06-15"))
    dates = [OLD if n % 3 == 0 else datetime(2026, 7, 1, tzinfo=UTC) + timedelta(hours=n)
             for n in range(20)]
    uids = [world.add(when) for when in dates]
    world.poller.options = PollOptions(fetch_batch_size=3, deadline_seconds=10,
                                       first_run=since("2026-06-15"))
    world.clock.tick = 3.0
    first = world.poller.run([MailboxConfig(A)])
    assert not first.mailboxes[0].complete and first.delivered > 0
    world.clock.tick = 0.0
    world.poller.run([MailboxConfig(A)])
    expected = [u for u, when in zip(uids, dates, strict=True) if when != OLD]
    assert world.delivered() == world.raw(expected) and len(world.sink.blobs) == len(expected)
    assert world.poller.run([MailboxConfig(A)]).delivered == 0


def test_after_a_reset_under_since_older_mail_stays_out():
    world = World(since("2026-06-15"))
    for when in (OLD, datetime(2026, 7, 1, tzinfo=UTC), OLD, datetime(2026, 8, 1, tzinfo=UTC)):
        world.add(when)
    world.poller.run([MailboxConfig(A)])
    world.server.folder(A).renumber(uidvalidity=3)
    report = world.poller.run([MailboxConfig(A)])
    assert report.delivered == 0 and report.mailboxes[0].folders[0].duplicates_skipped == 2
    assert len(world.sink.blobs) == 2


def test_a_message_whose_date_the_server_does_not_give_is_delivered():
    world = World(since("2026-06-15"))
    folder = world.server.folder(A)
    uid = world.add(datetime(2026, 7, 1, tzinfo=UTC))
    folder.unsized.add(uid)  # left out of the size and date FETCH
    world.add(OLD)
    assert world.poller.run([MailboxConfig(A)]).delivered == 1
    assert world.delivered() == world.raw([uid])


# --- POP3 -----------------------------------------------------------------------------------


def test_pop3_new_marks_the_maildrop_delivered_and_takes_what_arrives_after():
    world = World(NEW)
    pop3_a = MailboxConfig(A, ("INBOX",), "pop3")
    for n in range(6):
        world.pop3.deliver(A, f"old-{n}", message(n))
    assert world.poller.run([pop3_a]).delivered == 0 and world.sink.blobs == {}
    stored = world.state.get_pop3_checkpoint(A)
    assert stored is not None and stored.first_run == "new"
    assert world.pop3.sessions[-1].commands == ["UIDL"]
    world.pop3.deliver(A, "fresh-1", message(100))
    assert world.poller.run([pop3_a]).delivered == 1
    assert set(world.sink.blobs) == {pop3_blob_name(A, "fresh-1")}


def test_pop3_cannot_take_since_and_says_which_setting_to_change():
    world = World(since("2026-06-15"))  # e.g. a registry mailbox over POP3
    world.pop3.deliver(A, "old-1", message(1))
    report = world.poller.run([MailboxConfig(A, ("INBOX",), "pop3")])
    [failed] = report.failed
    assert failed.error_type == "ConfigurationError" and "FIRST_RUN" in (failed.error or "")
    assert world.sink.blobs == {} and world.state.get_pop3_checkpoint(A) is None


# --- settings -------------------------------------------------------------------------------

GOOD = {
    "M365_TENANT_ID": "00000000-0000-0000-0000-000000000000",
    "M365_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
    "KEY_VAULT_URL": "https://kv.vault.azure.net/",
    "CLIENT_SECRET_NAME": "secret",
    "MAILBOXES": "ops@contoso.com",
    "POLL_SCHEDULE": "0 */5 * * * *",
    "MAIL_STORAGE": "UseDevelopmentStorage=true",
}


@pytest.mark.parametrize(("text", "scope"), [
    ("all", ALL), ("NEW", NEW), (" since:2026-01-31 ", FirstRunScope("since", date(2026, 1, 31))),
])
def test_first_run_values(text, scope):
    assert Settings.from_mapping(GOOD | {"FIRST_RUN": text}).poll.first_run == scope


def test_first_run_defaults_to_all():
    assert Settings.from_mapping(GOOD).poll.first_run == ALL


@pytest.mark.parametrize(("text", "says"), [
    ("everything", "expected all, new or since:YYYY-MM-DD"),
    ("since:2026-02-30", "2026-02-30 is not a date"),
    ("since:20260101", "expected all, new or since:YYYY-MM-DD"),
    ("since:1969-12-31", "from 1970-01-01 on"),
    ("since", "expected all, new or since:YYYY-MM-DD"),
])
def test_a_bad_first_run_names_the_setting(text, says):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping(GOOD | {"FIRST_RUN": text})
    [problem] = caught.value.problems
    assert problem.startswith("FIRST_RUN is ") and says in problem


def test_since_for_pop3_mailboxes_is_refused_unless_they_choose_their_own():
    env = GOOD | {"FIRST_RUN": "since:2026-01-01", "MAIL_PROTOCOL": "pop3"}
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping(env)
    assert "FIRST_RUN" in str(caught.value) and "POP3" in str(caught.value)
    mailboxes = '[{"address": "ops@contoso.com", "first_run": "new"}]'
    assert Settings.from_mapping(env | {"MAILBOXES": mailboxes}).mailboxes[0].first_run == NEW


def test_mailboxes_json_sets_a_scope_per_mailbox():
    parsed = parse_mailboxes('["a@contoso.com", {"address": "b@contoso.com", "first_run": "new"},'
                             ' {"address": "c@contoso.com", "first_run": "since:2025-12-01"}]')
    assert [m.first_run for m in parsed] == [None, NEW, since("2025-12-01")]


@pytest.mark.parametrize(("entry", "says"), [
    ('{"address": "b@contoso.com", "first_run": "old"}', "first_run of JSON entry 1"),
    ('{"address": "b@contoso.com", "first_run": 2026}', "expected a string"),
    ('{"address": "b@contoso.com", "protocol": "pop3", "first_run": "since:2026-01-01"}', "POP3"),
])
def test_a_bad_mailbox_scope_names_the_entry(entry, says):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping(GOOD | {"MAILBOXES": f"[{entry}]"})
    assert "MAILBOXES is not valid" in str(caught.value) and says in str(caught.value)


def test_status_text_says_from_when_new_took_mail():
    assert describe("new", FIRST_POLL) == "new (mail received from 2026-11-28 00:00:00 UTC)"
    assert describe("since:2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)) == "since:2026-01-01"
    assert describe("all", None) == "all"
