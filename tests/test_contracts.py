"""The in-memory fakes and the real adapters pass the same contract tests.

Unit tests of the core trust the fakes to behave like Blob and Table storage and like an
IMAP server; these tests hold each fake to what the real adapter does on the local stack.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient

from devstack.stack import Stack
from shared.action_ports import ActionStateStore
from shared.adapters.action_table import TableActionStore
from shared.adapters.blob import BlobMessageSink
from shared.adapters.imap import ImapServer
from shared.adapters.pop3 import Pop3MailServer
from shared.adapters.table import TableStateStore
from shared.delivery_actions import ActionState, KnownFolders
from shared.errors import ActionUnavailable, CheckpointConflict, FolderUnavailable
from shared.model import Checkpoint, FolderResult, MailboxResult, Pop3Checkpoint, Secret
from shared.naming import uidl_digest
from shared.ports import (
    CheckpointStore,
    HealthStore,
    MailSession,
    MessageSink,
    Pop3CheckpointStore,
    Pop3Server,
)
from tests.fakes import FakePop3Server, FakeServer, FakeSink, FakeStateStore

KINDS = ["fake", "real"]
A = "contract@contoso.com"


@pytest.fixture(params=KINDS)
def sink(request: pytest.FixtureRequest) -> MessageSink:
    if request.param == "fake":
        return FakeSink()
    stack: Stack = request.getfixturevalue("stack")
    service = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    real = BlobMessageSink(service.get_container_client(f"contract-{uuid.uuid4().hex[:12]}"))
    real.ensure_container()
    return real


class StateStore(CheckpointStore, HealthStore, Pop3CheckpointStore):
    """What FakeStateStore and TableStateStore both are."""


@pytest.fixture(params=KINDS)
def state(request: pytest.FixtureRequest) -> StateStore:
    if request.param == "fake":
        return FakeStateStore()  # type: ignore[return-value]
    stack: Stack = request.getfixturevalue("stack")
    table = TableClient.from_connection_string(stack.storage_connection_string,
                                               f"contract{uuid.uuid4().hex[:12]}")
    real = TableStateStore(table)
    real.ensure_table()
    return real  # type: ignore[return-value]


MESSAGES = [b"Subject: one\r\nMessage-ID: <1@x>\r\n\r\nfirst\r\n",
            b"Subject: two\r\n\r\nsecond, a bit longer\r\n",
            b"Subject: three\r\n\r\n" + bytes(range(32, 127)) * 40 + b"\r\n"]


@pytest.fixture(params=KINDS)
def session(request: pytest.FixtureRequest) -> Iterator[MailSession]:
    """A session on INBOX holding MESSAGES (UIDs 1..3) and an empty folder 'Empty'."""
    with ExitStack() as stack_of_contexts:
        if request.param == "fake":
            server = FakeServer()
            for raw in MESSAGES:
                server.folder(A).append(raw)
            server.folder(A, "Empty")
            yield stack_of_contexts.enter_context(server.open(A, Secret("good-token")))
            return
        stack: Stack = request.getfixturevalue("stack")
        address = f"contract-{uuid.uuid4().hex[:10]}@contoso.com"
        stack.add_mailbox(address)
        stack.create_folder(address, "Empty")
        stack.append_many(address, "INBOX", MESSAGES)
        imap = ImapServer("127.0.0.1", stack.imaps_port, ca_bundle=stack.ca_bundle)
        yield stack_of_contexts.enter_context(imap.open(address, Secret(stack.issue_token())))


# Internal dates of MESSAGES in the 'dated' session: noon UTC, the same day in any time zone.
DATED = [datetime(2025, 3, 10, 12, tzinfo=UTC), datetime(2025, 3, 12, 12, tzinfo=UTC),
         datetime(2025, 3, 14, 12, tzinfo=UTC)]


@pytest.fixture(params=KINDS)
def dated(request: pytest.FixtureRequest) -> Iterator[MailSession]:
    """A session on INBOX holding MESSAGES (UIDs 1..3) received at DATED."""
    with ExitStack() as stack_of_contexts:
        if request.param == "fake":
            server = FakeServer()
            for raw, when in zip(MESSAGES, DATED, strict=True):
                server.folder(A).append(raw, when)
            yield stack_of_contexts.enter_context(server.open(A, Secret("good-token")))
            return
        stack: Stack = request.getfixturevalue("stack")
        address = f"contract-{uuid.uuid4().hex[:10]}@contoso.com"
        stack.add_mailbox(address)
        with stack.imap_session(address) as conn:
            for raw, when in zip(MESSAGES, DATED, strict=True):
                typ, data = conn.append("INBOX", "", when, raw)  # APPEND sets the internal date
                assert typ == "OK", data
        imap = ImapServer("127.0.0.1", stack.imaps_port, ca_bundle=stack.ca_bundle)
        yield stack_of_contexts.enter_context(imap.open(address, Secret(stack.issue_token())))


# --- MessageSink ------------------------------------------------------------------------


def test_a_blob_is_created_once_and_kept_byte_for_byte(sink: MessageSink) -> None:
    raw = b"Subject: x\r\n\r\n\x00\xff bytes\r\n"
    assert sink.create("a/b/1/0000000001.eml", raw, {"dedup_key": "k1"}) is True
    assert sink.create("a/b/1/0000000001.eml", b"other", {"dedup_key": "k2"}) is False
    assert sink.exists("a/b/1/0000000001.eml") and not sink.exists("a/b/1/0000000002.eml")
    assert list(sink.list_dedup_keys("a/b/")) == [("a/b/1/0000000001.eml", "k1")]


def test_a_chunked_blob_is_committed_whole_or_not_at_all(sink: MessageSink) -> None:
    def failing() -> Iterator[bytes]:
        yield b"part one"
        raise RuntimeError("the server went away")

    with pytest.raises(RuntimeError):
        sink.create_from_chunks("c/x/1/0000000001.eml", failing(), lambda: {"dedup_key": "k"})
    assert not sink.exists("c/x/1/0000000001.eml")
    assert sink.create_from_chunks("c/x/1/0000000001.eml", iter([b"one ", b"two"]),
                                   lambda: {"dedup_key": "k"}) is True
    assert sink.create_from_chunks("c/x/1/0000000001.eml", iter([b"again"]),
                                   lambda: {"dedup_key": "k"}) is False
    assert list(sink.list_dedup_keys("c/")) == [("c/x/1/0000000001.eml", "k")]


def test_dedup_keys_are_listed_only_under_their_prefix(sink: MessageSink) -> None:
    sink.create("m/f/1/0000000001.eml", b"x", {"dedup_key": "k1"})
    sink.create("m/f/2/0000000001.eml", b"y", {"dedup_key": "k2"})
    sink.create("m/g/1/0000000001.eml", b"z", {"dedup_key": "k3"})
    assert sorted(key for _, key in sink.list_dedup_keys("m/f/")) == ["k1", "k2"]


# --- CheckpointStore and HealthStore ------------------------------------------------------


def test_checkpoints_are_written_only_over_the_version_read(state: StateStore) -> None:
    assert state.get_checkpoint(A, "INBOX") is None
    first = state.put_checkpoint(Checkpoint(A, "INBOX", 7))
    with pytest.raises(CheckpointConflict):
        state.put_checkpoint(Checkpoint(A, "INBOX", 7))  # another "create"
    moved = state.put_checkpoint(Checkpoint(A, "INBOX", 7, last_uid=5, etag=first.etag))
    with pytest.raises(CheckpointConflict):
        state.put_checkpoint(Checkpoint(A, "INBOX", 7, last_uid=9, etag=first.etag))  # stale
    stored = state.get_checkpoint(A.upper(), "INBOX")  # addresses are case-insensitive
    assert stored is not None and stored.last_uid == 5 and stored.etag == moved.etag
    assert state.get_checkpoint(A, "inbox") is None  # folder names are not
    assert [(c.folder, c.last_uid) for c in state.list_checkpoints()] == [("INBOX", 5)]


def test_checkpoints_keep_the_first_run_scope_they_started_with(state: StateStore) -> None:
    cut = datetime(2026, 6, 15, tzinfo=UTC)
    state.put_checkpoint(Checkpoint(A, "INBOX", 7, first_run="since:2026-06-15", not_before=cut,
                                    scope_through_uid=40))
    state.put_checkpoint(Checkpoint(A, "Archive", 7))
    scoped, plain = state.get_checkpoint(A, "INBOX"), state.get_checkpoint(A, "Archive")
    assert scoped is not None and plain is not None
    assert (scoped.first_run, scoped.not_before, scoped.scope_through_uid) == ("since:2026-06-15",
                                                                               cut, 40)
    assert (plain.first_run, plain.not_before, plain.scope_through_uid) == ("all", None, 0)
    assert {c.folder: c.first_run for c in state.list_checkpoints()} == {
        "INBOX": "since:2026-06-15", "Archive": "all"}
    written = state.put_pop3_checkpoint(Pop3Checkpoint(A, frozenset({uidl_digest("u1")}),
                                                       first_run="new"))
    assert written.first_run == "new"
    stored = state.get_pop3_checkpoint(A)
    assert stored is not None and stored.first_run == "new"
    assert stored.delivered == frozenset({uidl_digest("u1")})


def test_health_counts_deliveries_and_failure_streaks(state: StateStore) -> None:
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    ok = MailboxResult(A, [FolderResult("INBOX", delivered=3)])
    failed = MailboxResult(A, [], error="refused", error_type="AuthenticationError")
    assert state.record_result(ok, at=at).delivered_total == 3
    state.record_result(failed, at=at)
    health = state.record_result(failed, at=at)
    assert health.consecutive_failures == 2 and health.failing_since is not None
    assert health.delivered_total == 3 and health.last_success_at is not None
    recovered = state.record_result(ok, at=at)
    assert recovered.consecutive_failures == 0 and recovered.failing_since is None
    assert recovered.delivered_total == 6
    [listed] = state.list_health()
    assert listed.delivered_total == 6


def test_a_health_row_changed_between_a_runs_read_and_its_write_loses_no_count(
        state: StateStore) -> None:
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    state.record_result(MailboxResult(A, [FolderResult("INBOX", delivered=1)]), at=at)
    assert state.get_health(A) is not None  # a run reads the row first...
    # ...another run (another process: a second store over the same rows) records meanwhile...
    other = TableStateStore(state._table) if isinstance(state, TableStateStore) else state
    other.record_result(MailboxResult(A, [FolderResult("INBOX", delivered=2)]), at=at)
    # ...and the first run's write still adds to what the other one wrote.
    health = state.record_result(MailboxResult(A, [FolderResult("INBOX", delivered=4)]), at=at)
    assert health.delivered_total == 7
    assert state.get_health(A) == health


def test_a_throttle_is_a_delay_kept_until_a_success(state: StateStore) -> None:
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert state.get_health(A) is None
    failed = MailboxResult(A, [], error="refused", error_type="AuthenticationError")
    state.record_result(failed, at=at)
    until = at + timedelta(minutes=5)
    throttled = MailboxResult(A, [FolderResult("INBOX", delivered=2)], error="NO Request is throttled.",
                              error_type="MailboxThrottled", throttled_until=until)
    first = state.record_result(throttled, at=at)
    later = at + timedelta(minutes=6)
    again = state.record_result(replace(throttled, throttled_until=later + timedelta(minutes=9)),
                                at=later)
    # Neither a success nor another failure: the failure streak and the last success stay.
    assert (first.throttled_until, first.throttled_since, first.throttle_count) == (until, at, 1)
    assert (again.throttled_since, again.throttle_count) == (at, 2)
    assert again.consecutive_failures == 1 and again.last_success_at is None
    assert again.delivered_total == 4 and "throttled" in (again.last_error or "")
    assert state.get_health(A.upper()) == again
    recovered = state.record_result(MailboxResult(A, [FolderResult("INBOX")]), at=later)
    assert (recovered.throttled_until, recovered.throttled_since, recovered.throttle_count) == (
        None, None, 0)
    assert recovered.consecutive_failures == 0


# --- MailSession --------------------------------------------------------------------------


def test_a_session_examines_searches_and_fetches_byte_for_byte(session: MailSession) -> None:
    folder = session.select_folder("INBOX")
    assert folder.uidvalidity > 0 and folder.exists == 3
    assert sorted(session.search_uids_from(1)) == [1, 2, 3]
    # `UID n:*` includes the highest UID even when it is below n.
    assert session.search_uids_from(10) == [3]
    assert [(m.uid, m.raw) for m in session.fetch([1, 2, 3])] == list(enumerate(MESSAGES, 1))
    assert [(i.uid, i.size) for i in session.fetch_info([1, 2, 3])] == [
        (n, len(raw)) for n, raw in enumerate(MESSAGES, 1)]


def test_a_message_comes_in_pieces_and_a_missing_one_reads_as_none(session: MailSession) -> None:
    session.select_folder("INBOX")
    whole = MESSAGES[2]
    body = session.fetch_pieces(3, 16)
    assert body is not None
    with closing(body):
        pieces = list(body)
    assert b"".join(pieces) == whole
    assert all(len(p) == 16 for p in pieces[:-1]) and 0 < len(pieces[-1]) <= 16
    assert session.fetch_pieces(99, 16) is None
    assert list(session.fetch([99])) == []


def test_pieces_left_unread_do_not_spoil_the_session(session: MailSession) -> None:
    session.select_folder("INBOX")
    body = session.fetch_pieces(3, 8)
    assert body is not None
    assert next(body) == MESSAGES[2][:8]
    body.close()
    assert [(m.uid, m.raw) for m in session.fetch([1, 2])] == list(enumerate(MESSAGES[:2], 1))


def test_an_empty_folder_and_a_missing_one(session: MailSession) -> None:
    assert session.select_folder("Empty").exists == 0
    assert session.search_uids_from(1) == []
    with pytest.raises(FolderUnavailable):
        session.select_folder("No Such Folder")


def test_search_since_goes_by_the_day_of_the_internal_date(dated: MailSession) -> None:
    dated.select_folder("INBOX")
    assert sorted(dated.search_uids_since(date(2025, 1, 1))) == [1, 2, 3]
    assert sorted(dated.search_uids_since(date(2025, 3, 11))) == [2, 3]
    assert sorted(dated.search_uids_since(date(2025, 3, 12))) == [2, 3]  # on the day counts
    assert dated.search_uids_since(date(2025, 3, 15)) == []
    # The size FETCH gives the exact moments the search rounds to days (the real adapter in
    # local time without a zone, as IMAPClient gives it).
    infos = dated.fetch_info([1, 2, 3])
    assert [i.internal_date.astimezone(UTC) for i in infos if i.internal_date] == DATED


# --- MailSession: after delivery ------------------------------------------------------------


def test_capabilities_after_login_offer_move_and_uidplus(session: MailSession) -> None:
    assert {"MOVE", "UIDPLUS"} <= session.capabilities()


def test_folders_are_listed_decoded_with_their_delimiter_and_created_ones_appear(
        session: MailSession) -> None:
    session.create_folder("Parent/Übersicht & more")
    session.create_folder("Parent/Übersicht & more")  # already there: nothing happens
    listed = {f.name: f for f in session.list_folders()}
    assert {"INBOX", "Empty", "Parent/Übersicht & more"} <= set(listed)
    assert {f.delimiter for f in listed.values()} == {"/"}
    assert listed["Parent/Übersicht & more"].selectable
    assert not listed["Parent"].selectable  # implied by its child, not a folder itself


def test_a_writable_folder_takes_flags_and_searches_unseen_within_a_range(session: MailSession) -> None:
    session.select_folder("INBOX")
    session.uid_store_flags([1], ["\\Seen"])  # opened read-only: changes nothing
    opened = session.select_folder_writable("INBOX")
    assert opened.exists == 3
    assert session.search_uids_between(1, 3, unseen=True) == [1, 2, 3]
    session.uid_store_flags([2], ["\\Seen"])
    assert session.search_uids_between(1, 3, unseen=True) == [1, 3]
    assert session.search_uids_between(2, 9) == [2, 3]
    assert session.search_uids_between(5, 9) == [] and session.search_uids_between(3, 2) == []


def test_move_copy_and_expunge_by_uid_touch_only_the_uids_given(session: MailSession) -> None:
    session.create_folder("Done")
    session.select_folder_writable("INBOX")
    session.uid_move([1], "Done")
    session.uid_copy([2], "Done")
    assert session.search_uids_between(1, 3) == [2, 3]
    done = session.folder_status("Done")
    assert done.exists == 2 and done.uidnext == 3
    session.uid_store_flags([2, 3], ["\\Deleted"])
    session.uid_expunge([2])  # 3 is flagged too, but not named: it stays
    assert session.search_uids_between(1, 3) == [3]
    session.select_folder("Done")
    assert [m.raw for m in session.fetch([1, 2])] == MESSAGES[:2]


def test_moving_to_a_missing_folder_is_an_action_error(session: MailSession) -> None:
    session.select_folder_writable("INBOX")
    with pytest.raises(ActionUnavailable):
        session.uid_move([1], "No Such Folder")
    with pytest.raises(ActionUnavailable):
        session.folder_status("No Such Folder")
    assert session.search_uids_between(1, 3) == [1, 2, 3]


# --- ActionStateStore -----------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def actions(request: pytest.FixtureRequest) -> ActionStateStore:
    if request.param == "fake":
        return FakeStateStore()
    stack: Stack = request.getfixturevalue("stack")
    table = TableClient.from_connection_string(stack.storage_connection_string,
                                               f"contract{uuid.uuid4().hex[:12]}")
    TableStateStore(table).ensure_table()
    return TableActionStore(table)


def test_action_states_are_written_only_over_the_version_read(actions: ActionStateStore) -> None:
    assert actions.get_action_state(A, "Übersicht/2024") is None
    first = actions.put_action_state(ActionState(A, "Übersicht/2024", 7, acted_through_uid=3))
    with pytest.raises(CheckpointConflict):
        actions.put_action_state(ActionState(A, "Übersicht/2024", 7))
    journal = actions.put_action_state(ActionState(
        A, "Übersicht/2024", 7, acted_through_uid=5, pending=2, without_blob=1, copy_uids=(6, 7, 9),
        copy_target="Archive/ü", copy_target_uidvalidity=11, copy_target_uidnext=40, etag=first.etag))
    with pytest.raises(CheckpointConflict):
        actions.put_action_state(ActionState(A, "Übersicht/2024", 7, etag=first.etag))
    stored = actions.get_action_state(A.upper(), "Übersicht/2024")
    assert stored == journal
    assert actions.list_action_states() == [journal]


def test_known_folders_round_trip(actions: ActionStateStore) -> None:
    since = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    known = KnownFolders(A, ("INBOX", "Übersicht", 'Q"uote'), (("Gone/ü", since),))
    actions.put_known_folders(known)
    assert actions.get_known_folders(A) == known
    assert actions.get_known_folders("nobody@contoso.com") is None


# --- Pop3Session: DELE ----------------------------------------------------------------------

POP3_MESSAGES = [b"Subject: p1\r\n\r\none\r\n", b"Subject: p2\r\n\r\ntwo\r\n"]


@pytest.fixture(params=KINDS)
def pop3(request: pytest.FixtureRequest) -> tuple[Pop3Server, str, Secret]:
    if request.param == "fake":
        fake = FakePop3Server()
        for n, raw in enumerate(POP3_MESSAGES):
            fake.deliver(A, f"U{n}", raw)
        return fake, A, Secret("good-token")
    stack: Stack = request.getfixturevalue("stack")
    address = f"contract-{uuid.uuid4().hex[:10]}@contoso.com"
    stack.add_mailbox(address)
    stack.append_many(address, "INBOX", POP3_MESSAGES)
    real = Pop3MailServer("127.0.0.1", stack.pop3s_port, ca_bundle=stack.ca_bundle)
    return real, address, Secret(stack.issue_token())


def test_dele_hides_a_message_at_once_and_removes_it_at_quit(pop3: tuple[Pop3Server, str, Secret]) -> None:
    server, address, token = pop3
    with server.open(address, token) as session:
        [(first, _), (second, kept)] = session.list_uidls()
        session.dele(first)
        assert session.list_uidls() == [(second, kept)]
    with server.open(address, token) as session:
        assert [uidl for _, uidl in session.list_uidls()] == [kept]
        assert session.retrieve(session.list_uidls()[0][0]) == POP3_MESSAGES[1]
