"""In-memory implementations of the poll core's ports, for unit tests of the core."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from shared.delivery_actions import ActionState, KnownFolders
from shared.errors import (
    ActionUnavailable,
    AuthenticationError,
    CheckpointConflict,
    FailureKind,
    FolderUnavailable,
    MailboxThrottled,
    MailServerError,
    StorageError,
)
from shared.folder_patterns import ListedFolder
from shared.model import (
    Checkpoint,
    FetchedMessage,
    FolderState,
    Health,
    MailboxResult,
    MessageInfo,
    Pop3Checkpoint,
    Secret,
)
from shared.naming import LEASE_SECONDS
from shared.ports import ThreadStart, no_thread_setup

ARRIVED = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeFolder:
    uidvalidity: int = 1
    messages: dict[int, bytes] = field(default_factory=dict)
    next_uid: int = 1
    arrived: dict[int, datetime] = field(default_factory=dict)
    # Listed by SEARCH but never sent by FETCH: a server that drops data.
    withheld: set[int] = field(default_factory=set)
    # Listed by SEARCH, sent by FETCH, but left out of the size FETCH.
    unsized: set[int] = field(default_factory=set)
    flags: dict[int, set[str]] = field(default_factory=dict)
    # LIST attributes, e.g. {"\\Trash"} for a special-use folder.
    attributes: frozenset[str] = frozenset()

    def append(self, raw: bytes, arrived: datetime = ARRIVED, flags: set[str] | None = None) -> int:
        uid = self.next_uid
        self.messages[uid] = raw
        self.arrived[uid] = arrived
        self.flags[uid] = set(flags or ())
        self.next_uid += 1
        return uid

    def expunge(self, uid: int) -> None:
        """What another client's expunge does."""
        del self.messages[uid]

    def renumber(self, uidvalidity: int) -> None:
        """What a server does on a UIDVALIDITY reset: same messages, new UIDs."""
        old = [(self.messages[u], self.arrived[u], self.flags.get(u)) for u in sorted(self.messages)]
        self.uidvalidity, self.messages, self.next_uid = uidvalidity, {}, 1
        for raw, arrived, flags in old:
            self.append(raw, arrived, flags)

    def sent(self, uid: int) -> bytes | None:
        return None if uid in self.withheld else self.messages.get(uid)


def throttled(retry_after_seconds: float | None = 30.0) -> MailboxThrottled:
    """What the adapters raise for Exchange's ``Request is throttled``."""
    wait = f" Suggested Backoff Time: {retry_after_seconds * 1000:.0f} milliseconds" \
        if retry_after_seconds is not None else ""
    return MailboxThrottled(f"NO Request is throttled.{wait}", retry_after_seconds=retry_after_seconds)


def dropped(what: str) -> MailServerError:
    """What the adapters raise when the connection drops."""
    return MailServerError(f"the connection was lost during {what}", kind=FailureKind.CONNECTION_DROPPED)


class FakeSession:
    def __init__(self, folders: dict[str, FakeFolder],
                 after: dict[str, Callable[[], None]] | None = None,
                 refusals: list[tuple[str, int, Exception]] | None = None,
                 offered: frozenset[str] = frozenset({"IMAP4REV1", "UIDPLUS", "MOVE"}),
                 cuts: list[int | None] | None = None, fetched: list[int] | None = None) -> None:
        self.folders = folders
        self.selected: FakeFolder | None = None
        self.writable = False
        self.commands: list[str] = []
        # Something another client does right after this session's command of that name
        # (or, raising, where a run dies).
        self.after = after or {}
        self.offered = offered
        # (command, how many of them first pass, the error answered instead), used up in order.
        self.refusals = refusals if refusals is not None else []
        # Shared with the server: each body FETCH takes the first; it sends that many
        # messages, then the connection drops (the session is dead from then on); None:
        # that FETCH goes through. A 0 first when a message is streamed: the connection
        # drops after its first piece.
        self.cuts = cuts if cuts is not None else []
        self.dead = False
        # How many messages each body FETCH asked for (shared with the server).
        self.fetched = fetched if fetched is not None else []

    def _answer(self, command: str) -> None:
        if self.dead:
            raise dropped(command)
        self.commands.append(command)
        self.refuse_if_scripted(command)

    def refuse_if_scripted(self, command: str) -> None:
        for index, (name, passing, error) in enumerate(self.refusals):
            if name == command:
                if passing:
                    self.refusals[index] = (name, passing - 1, error)
                    return
                del self.refusals[index]
                raise error

    def select_folder(self, folder: str) -> FolderState:
        self._answer("EXAMINE")
        if folder not in self.folders:
            raise FolderUnavailable(f"EXAMINE {folder} failed: Mailbox doesn't exist: {folder}")
        self.selected = self.folders[folder]
        self.writable = False
        return FolderState(self.selected.uidvalidity, self.selected.next_uid,
                           len(self.selected.messages))

    def search_uids_from(self, first_uid: int) -> list[int]:
        self._answer("UID SEARCH")
        assert self.selected is not None
        uids = [u for u in self.selected.messages if u >= first_uid]
        # Like real servers, `n:*` includes the highest UID even when it is below n.
        if self.selected.messages and not uids:
            uids = [max(self.selected.messages)]
        return uids

    def fetch(self, uids: Sequence[int]) -> Iterator[FetchedMessage]:
        self._answer("UID FETCH")
        self.fetched.append(len(uids))
        folder = self.selected
        assert folder is not None
        sent = [(u, folder.sent(u)) for u in uids]
        whole = [FetchedMessage(u, raw, folder.arrived[u]) for u, raw in sent if raw is not None]
        cut = self.cuts.pop(0) if self.cuts else None
        yield from whole[:cut]
        if cut is not None:
            self.dead = True
            raise dropped("UID FETCH")

    def fetch_info(self, uids: Sequence[int]) -> list[MessageInfo]:
        self._answer("UID FETCH")
        folder = self.selected
        assert folder is not None
        infos = [MessageInfo(u, len(folder.messages[u]), folder.arrived[u])
                 for u in uids if u in folder.messages and u not in folder.unsized]
        self._then("fetch_info")
        return infos

    def fetch_pieces(self, uid: int, piece: int) -> Generator[bytes, None, None] | None:
        self._answer("UID FETCH")
        assert self.selected is not None
        raw = self.selected.sent(uid)
        self._then("fetch_pieces")
        if raw is None:
            return None

        def pieces(raw: bytes) -> Generator[bytes, None, None]:
            for offset in range(0, len(raw), piece):
                if offset > 0 and self.cuts and self.cuts[0] == 0:  # cut after the first piece
                    self.cuts.pop(0)
                    self.dead = True
                    raise dropped("UID FETCH")
                yield raw[offset:offset + piece]
        return pieces(raw)

    def _then(self, command: str) -> None:
        action = self.after.pop(command, None)
        if action is not None:
            action()

    def search_uids_since(self, day: date) -> list[int]:
        self.commands.append("UID SEARCH SINCE")
        folder = self.selected
        assert folder is not None
        # Like servers, to the day of the internal date as written, its time zone disregarded.
        return sorted(u for u in folder.messages if folder.arrived[u].date() >= day)

    # -- after delivery ------------------------------------------------------------------
    def capabilities(self) -> frozenset[str]:
        return self.offered

    def list_folders(self) -> list[ListedFolder]:
        self._answer("LIST")
        names = set(self.folders)
        # Like Dovecot, a parent that is not a folder itself is listed as \Noselect.
        parents = {name.rsplit("/", i)[0] for name in names for i in range(1, name.count("/") + 1)}
        listed = [ListedFolder(n, "/", frozenset({"\\HasNoChildren"}) | self.folders[n].attributes)
                  for n in sorted(names)]
        return listed + [ListedFolder(p, "/", frozenset({"\\Noselect", "\\HasChildren"}))
                         for p in sorted(parents - names)]

    def select_folder_writable(self, folder: str) -> FolderState:
        state = self.select_folder(folder)
        self.commands[-1] = "SELECT"
        self.writable = True
        return state

    def search_uids_between(self, first_uid: int, last_uid: int, *, unseen: bool = False) -> list[int]:
        self._answer("UID SEARCH")
        folder = self.selected
        assert folder is not None
        return sorted(u for u in folder.messages if first_uid <= u <= last_uid
                      and not (unseen and "\\Seen" in folder.flags[u]))

    def folder_status(self, folder: str) -> FolderState:
        self._answer("STATUS")
        found = self._folder(folder)
        return FolderState(found.uidvalidity, found.next_uid, len(found.messages))

    def create_folder(self, folder: str) -> None:
        self._answer("CREATE")
        self.folders.setdefault(folder, FakeFolder())

    def uid_store_flags(self, uids: Sequence[int], flags: Sequence[str]) -> None:
        self._answer("UID STORE")
        folder = self.selected
        assert folder is not None
        # Like Dovecot, a STORE in a folder opened read-only answers OK and changes nothing.
        for uid in uids if self.writable else ():
            if uid in folder.messages:
                folder.flags[uid] |= set(flags)
        self._then("uid_store_flags")

    def uid_move(self, uids: Sequence[int], folder: str) -> None:
        if "MOVE" not in self.offered:
            raise ActionUnavailable("UID MOVE failed: BAD Command Error. 12")
        source = self._copy(uids, folder, "UID MOVE")
        for uid in uids:
            source.messages.pop(uid, None)
        self._then("uid_move")

    def uid_copy(self, uids: Sequence[int], folder: str) -> None:
        self._copy(uids, folder, "UID COPY")
        self._then("uid_copy")

    def _copy(self, uids: Sequence[int], folder: str, verb: str) -> FakeFolder:
        source, target = self._writable(verb), self._folder(folder)
        for uid in sorted(uids):
            if uid in source.messages:
                target.append(source.messages[uid], source.arrived[uid], source.flags[uid])
        return source

    def uid_expunge(self, uids: Sequence[int]) -> None:
        if "UIDPLUS" not in self.offered:
            raise ActionUnavailable("UID EXPUNGE failed: BAD Command Error. 12")
        folder = self._writable("UID EXPUNGE")
        for uid in uids:
            if uid in folder.messages and "\\Deleted" in folder.flags[uid]:
                del folder.messages[uid]
        self._then("uid_expunge")

    def _folder(self, name: str) -> FakeFolder:
        if name not in self.folders:
            raise ActionUnavailable(f"{name} failed: NO [TRYCREATE] Mailbox doesn't exist: {name}")
        return self.folders[name]

    def _writable(self, verb: str) -> FakeFolder:
        self._answer(verb)
        if self.selected is None or not self.writable:
            raise ActionUnavailable(f"{verb} failed: NO Mailbox is read-only")
        return self.selected


class FakeServer:
    def __init__(self) -> None:
        self.mailboxes: dict[str, dict[str, FakeFolder]] = {}
        self.refused: set[str] = set()
        self.sessions: list[FakeSession] = []
        # Handed to the next session: see FakeSession.after.
        self.after: dict[str, Callable[[], None]] = {}
        # Per mailbox: errors answered instead, at login ("AUTHENTICATE") or a command.
        self.refusals: dict[str, list[tuple[str, int, Exception]]] = {}
        # Sessions open now per mailbox, and the most at once.
        self.open_now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._lock = threading.Lock()
        # What sessions offer after login.
        self.offered = frozenset({"IMAP4REV1", "UIDPLUS", "MOVE"})
        # Where the next body FETCHes drop the connection: see FakeSession.cuts.
        self.cuts: list[int | None] = []
        self.fetched: list[int] = []
        self.deadlines: list[float | None] = []

    def refuse(self, address: str, error: Exception, *, at: str = "AUTHENTICATE",
               after: int = 0) -> None:
        """Answer the mailbox's ``at`` command with ``error`` once, after ``after`` of them pass."""
        self.refusals.setdefault(address, []).append((at, after, error))

    def folder(self, address: str, name: str = "INBOX") -> FakeFolder:
        return self.mailboxes.setdefault(address, {}).setdefault(name, FakeFolder())

    @contextmanager
    def open(self, address: str, token: Secret, *,
             deadline: float | None = None) -> Iterator[FakeSession]:
        with self._lock:
            self.open_now[address] = self.open_now.get(address, 0) + 1
            self.peak[address] = max(self.peak.get(address, 0), self.open_now[address])
        try:
            if address in self.refused or token.reveal() != "good-token":
                raise AuthenticationError(f"{address}: AUTHENTICATE failed")
            session = FakeSession(self.mailboxes[address], self.after,
                                  self.refusals.setdefault(address, []), self.offered,
                                  self.cuts, self.fetched)
            session.refuse_if_scripted("AUTHENTICATE")
            self.sessions.append(session)
            self.deadlines.append(deadline)
            yield session
        finally:
            with self._lock:
                self.open_now[address] -= 1


class FakeTokens:
    def __init__(self, token: str = "good-token") -> None:
        self.token = token
        self.calls = 0

    def get_token(self) -> Secret:
        self.calls += 1
        return Secret(self.token)


class FakeSink:
    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.writes = 0
        self.fail_after: int | None = None
        self.streamed: list[str] = []
        self.stream_thread_starts: list[ThreadStart] = []
        # Called first by every write, outside the lock: a test holds writes back with it.
        self.before_write: Callable[[], None] = lambda: None
        self._lock = threading.Lock()

    def create(self, name: str, raw: bytes, metadata: Mapping[str, str]) -> bool:
        self.before_write()
        with self._lock:
            if self.fail_after is not None and self.writes >= self.fail_after:
                raise StorageError("storage went away")
            self.writes += 1
            if name in self.blobs:
                return False
            self.blobs[name] = (raw, dict(metadata))
            return True

    def exists(self, name: str) -> bool:
        return name in self.blobs

    def create_from_chunks(self, name: str, chunks: Iterable[bytes],
                           metadata: Callable[[], Mapping[str, str]], *,
                           on_thread_start: ThreadStart = no_thread_setup) -> bool:
        staged = b"".join(chunks)  # the staged blocks; nothing is visible until committed
        self.streamed.append(name)
        self.stream_thread_starts.append(on_thread_start)
        return self.create(name, staged, metadata())

    def list_dedup_keys(self, prefix: str) -> Iterator[tuple[str, str]]:
        for name, (_, metadata) in sorted(self.blobs.items()):
            if name.startswith(prefix):
                yield name, metadata["dedup_key"]


class FakeStateStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Checkpoint] = {}
        self.action_rows: dict[tuple[str, str], ActionState] = {}
        self.known: dict[str, KnownFolders] = {}
        self.pop3_rows: dict[str, Pop3Checkpoint] = {}
        self.health: dict[str, Health] = {}
        self.health_reads = 0
        self.version = 0
        self.writes = 0

    def get_checkpoint(self, mailbox: str, folder: str) -> Checkpoint | None:
        return self.rows.get((mailbox.lower(), folder))

    def put_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        key = (checkpoint.mailbox.lower(), checkpoint.folder)
        current = self.rows.get(key)
        if (current.etag if current else None) != checkpoint.etag:
            raise CheckpointConflict("changed by another run")
        self.version += 1
        self.writes += 1
        stored = replace(checkpoint, etag=f"v{self.version}")
        self.rows[key] = stored
        return stored

    def list_checkpoints(self) -> list[Checkpoint]:
        return list(self.rows.values())

    def record_result(self, result: MailboxResult, *, at: datetime) -> Health:
        key = result.address.lower()  # addresses are case-insensitive, as in the table
        previous = self.health.get(key, Health(result.address))
        if result.throttled_until is not None:
            self.health[key] = replace(
                previous, last_attempt_at=at, last_error=result.error, last_error_at=at,
                delivered_total=previous.delivered_total + result.delivered,
                throttled_until=result.throttled_until,
                throttled_since=previous.throttled_since or at,
                throttle_count=previous.throttle_count + 1)
        elif result.ok:
            self.health[key] = replace(
                previous, last_attempt_at=at, last_success_at=at, consecutive_failures=0,
                delivered_total=previous.delivered_total + result.delivered, failing_since=None,
                folder_errors="; ".join(f"{f.folder}: {f.error}" for f in result.folder_errors)
                or None, throttled_until=None, throttled_since=None, throttle_count=0,
                folders_gone="; ".join(f"{f.folder} (gone since {f.gone_since:%Y-%m-%d})"
                                       for f in result.folders_gone) or None)
        else:
            self.health[key] = replace(
                previous, last_attempt_at=at, last_error=result.error, last_error_at=at,
                consecutive_failures=previous.consecutive_failures + 1,
                failing_since=previous.failing_since or at)
        return self.health[key]

    def list_health(self) -> list[Health]:
        return list(self.health.values())

    def get_action_state(self, mailbox: str, folder: str) -> ActionState | None:
        return self.action_rows.get((mailbox.lower(), folder))

    def put_action_state(self, state: ActionState) -> ActionState:
        key = (state.mailbox.lower(), state.folder)
        current = self.action_rows.get(key)
        if (current.etag if current else None) != state.etag:
            raise CheckpointConflict("changed by another run")
        self.version += 1
        self.writes += 1
        stored = replace(state, etag=f"v{self.version}")
        self.action_rows[key] = stored
        return stored

    def list_action_states(self) -> list[ActionState]:
        return list(self.action_rows.values())

    def get_known_folders(self, mailbox: str) -> KnownFolders | None:
        return self.known.get(mailbox.lower())

    def put_known_folders(self, known: KnownFolders) -> None:
        self.known[known.mailbox.lower()] = known

    def get_health(self, mailbox: str) -> Health | None:
        self.health_reads += 1
        return self.health.get(mailbox.lower())

    def get_pop3_checkpoint(self, mailbox: str) -> Pop3Checkpoint | None:
        return self.pop3_rows.get(mailbox.lower())

    def put_pop3_checkpoint(self, checkpoint: Pop3Checkpoint) -> Pop3Checkpoint:
        current = self.pop3_rows.get(checkpoint.mailbox.lower())
        if (current.etag if current else None) != checkpoint.etag:
            raise CheckpointConflict("changed by another run")
        self.version += 1
        self.writes += 1
        stored = replace(checkpoint, etag=f"v{self.version}")
        self.pop3_rows[checkpoint.mailbox.lower()] = stored
        return stored


class FakeClock:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.tick = 0.0
        # The wall clock; tests move it to let time pass.
        self.at = datetime(2026, 11, 28, tzinfo=UTC)

    def monotonic(self) -> float:
        self.seconds += self.tick
        return self.seconds

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        """What waiting does to this clock."""
        self.seconds += seconds


class FakePop3Session:
    def __init__(self, maildrop: list[tuple[str, bytes]], cuts: list[int] | None = None) -> None:
        self.maildrop = list(maildrop)  # a POP3 session sees the maildrop as it was at login
        self.commands: list[str] = []
        self.deleted: set[int] = set()
        # Shared with the server: the connection drops at the RETR after that many more.
        self.cuts = cuts if cuts is not None else []
        self.dead = False
        self.piece_bytes = 1024
        self.cut_inside = False  # the next message read in pieces drops after its first piece

    def list_uidls(self) -> list[tuple[int, str]]:
        self.commands.append("UIDL")
        # Like a real server, messages marked deleted are no longer listed.
        return [(number, uidl) for number, (uidl, _) in enumerate(self.maildrop, 1)
                if number not in self.deleted]

    def retrieve(self, number: int) -> bytes:
        self.commands.append("RETR")
        if self.cuts and self.cuts[0] <= 0:
            self.cuts.pop(0)
            self.dead = True
            raise dropped("RETR")
        if self.cuts:
            self.cuts[0] -= 1
        return self.maildrop[number - 1][1]

    def retrieve_pieces(self, number: int) -> Generator[bytes, None, None]:
        raw = self.retrieve(number)
        for start in range(0, len(raw), self.piece_bytes):
            if start and self.cut_inside:  # the connection drops partway through the message
                self.cut_inside = False
                self.dead = True
                raise dropped("RETR")
            yield raw[start:start + self.piece_bytes]

    def dele(self, number: int) -> None:
        self.commands.append("DELE")
        if number in self.deleted or not 1 <= number <= len(self.maildrop):
            raise MailServerError(f"DELE {number} failed: -ERR no such message")
        self.deleted.add(number)


class FakePop3Server:
    def __init__(self) -> None:
        self.maildrops: dict[str, list[tuple[str, bytes]]] = {}
        self.refused: set[str] = set()
        # Answered at the next login instead of +OK, once.
        self.throttled: dict[str, MailboxThrottled] = {}
        self.sessions: list[FakePop3Session] = []
        # The run dies before its QUIT: what it marked with DELE stays in the maildrop.
        self.dies_before_quit = False
        # Where the next sessions drop the connection: see FakePop3Session.cuts.
        self.cuts: list[int] = []
        # The next session drops inside the first message it reads in pieces.
        self.cut_inside = False

    def deliver(self, address: str, uidl: str, raw: bytes) -> None:
        self.maildrops.setdefault(address, []).append((uidl, raw))

    def remove(self, address: str, uidl: str) -> None:
        """What another client's DELE does."""
        self.maildrops[address] = [(u, r) for u, r in self.maildrops[address] if u != uidl]

    @contextmanager
    def open(self, address: str, token: Secret, *,
             deadline: float | None = None) -> Iterator[FakePop3Session]:
        if address in self.refused or token.reveal() != "good-token":
            raise AuthenticationError(f"{address}: -ERR Authentication failure")
        if address in self.throttled:
            raise self.throttled.pop(address)
        session = FakePop3Session(self.maildrops.setdefault(address, []), self.cuts)
        session.cut_inside, self.cut_inside = self.cut_inside, False
        self.sessions.append(session)
        try:
            yield session
        finally:
            # The adapter ends every healthy session with QUIT, which commits the DELEs; a
            # dropped one is just closed.
            if not self.dies_before_quit and not session.dead:
                gone = {session.maildrop[n - 1][0] for n in session.deleted}
                self.maildrops[address] = [(u, r) for u, r in self.maildrops[address] if u not in gone]


class FakeLease:
    def __init__(self, store: FakeLeaseStore, mailbox: str) -> None:
        self.store = store
        self.mailbox = mailbox
        self.renewals = 0
        self.released = False
        self.renew_fails = False

    def renew(self) -> None:
        if self.renew_fails:
            raise StorageError("lease lost")
        self.renewals += 1

    def release(self) -> None:
        self.released = True
        with self.store.lock:
            if self.store.held.get(self.mailbox) is self:
                del self.store.held[self.mailbox]


class FakeLeaseStore:
    """At most one holder per mailbox; ``expire`` is what the service does to an unrenewed lease."""

    def __init__(self, duration_seconds: float = LEASE_SECONDS) -> None:
        self.duration_seconds = duration_seconds
        self.held: dict[str, FakeLease] = {}
        self.granted: list[FakeLease] = []
        self.lock = threading.Lock()

    def acquire(self, mailbox: str) -> FakeLease | None:
        with self.lock:
            if mailbox.lower() in self.held:
                return None
            lease = FakeLease(self, mailbox.lower())
            self.held[mailbox.lower()] = lease
            self.granted.append(lease)
            return lease

    def expire(self, mailbox: str) -> None:
        with self.lock:
            self.held.pop(mailbox.lower(), None)


class FakeNoticeQueue:
    """The notice queue: messages in order; ``fail`` makes each send raise."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.fail = False
        self._lock = threading.Lock()

    def send(self, text: str) -> None:
        if self.fail:
            raise StorageError("the notice queue went away")
        with self._lock:
            self.messages.append(text)


class FakeDeliveredBlobs:
    """Reads the blobs of a FakeSink back; keeps summary documents beside them."""

    def __init__(self, sink: FakeSink) -> None:
        self.sink = sink
        self.documents: dict[str, str] = {}

    def get_size_and_metadata(self, name: str) -> tuple[int, dict[str, str]]:
        raw, metadata = self.sink.blobs[name]
        return len(raw), dict(metadata)

    def read(self, name: str, *, length: int | None = None) -> Iterator[bytes]:
        raw = self.sink.blobs[name][0]
        data = raw if length is None else raw[:length]
        for start in range(0, len(data), 1000):
            yield data[start:start + 1000]

    def create_json(self, name: str, text: str) -> bool:
        if name in self.documents:
            return False
        self.documents[name] = text
        return True
