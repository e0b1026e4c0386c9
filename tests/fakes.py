"""In-memory implementations of the poll core's ports, for unit tests of the core."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from shared.errors import AuthenticationError, CheckpointConflict, FolderUnavailable, StorageError
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

    def append(self, raw: bytes, arrived: datetime = ARRIVED) -> int:
        uid = self.next_uid
        self.messages[uid] = raw
        self.arrived[uid] = arrived
        self.next_uid += 1
        return uid

    def expunge(self, uid: int) -> None:
        """What another client's expunge does."""
        del self.messages[uid]

    def renumber(self, uidvalidity: int) -> None:
        """What a server does on a UIDVALIDITY reset: same messages, new UIDs."""
        old = [(self.messages[u], self.arrived[u]) for u in sorted(self.messages)]
        self.uidvalidity, self.messages, self.next_uid = uidvalidity, {}, 1
        for raw, arrived in old:
            self.append(raw, arrived)

    def sent(self, uid: int) -> bytes | None:
        return None if uid in self.withheld else self.messages.get(uid)


class FakeSession:
    def __init__(self, folders: dict[str, FakeFolder],
                 after: dict[str, Callable[[], None]] | None = None) -> None:
        self.folders = folders
        self.selected: FakeFolder | None = None
        self.commands: list[str] = []
        # Something another client does right after this session's command of that name.
        self.after = after or {}

    def select_folder(self, folder: str) -> FolderState:
        self.commands.append("EXAMINE")
        if folder not in self.folders:
            raise FolderUnavailable(f"EXAMINE {folder} failed: Mailbox doesn't exist: {folder}")
        self.selected = self.folders[folder]
        return FolderState(self.selected.uidvalidity, self.selected.next_uid,
                           len(self.selected.messages))

    def search_uids_from(self, first_uid: int) -> list[int]:
        self.commands.append("UID SEARCH")
        assert self.selected is not None
        uids = [u for u in self.selected.messages if u >= first_uid]
        # Like real servers, `n:*` includes the highest UID even when it is below n.
        if self.selected.messages and not uids:
            uids = [max(self.selected.messages)]
        return uids

    def fetch(self, uids: Sequence[int]) -> list[FetchedMessage]:
        self.commands.append("UID FETCH")
        folder = self.selected
        assert folder is not None
        sent = [(u, folder.sent(u)) for u in uids]
        return [FetchedMessage(u, raw, folder.arrived[u]) for u, raw in sent if raw is not None]

    def fetch_info(self, uids: Sequence[int]) -> list[MessageInfo]:
        self.commands.append("UID FETCH")
        folder = self.selected
        assert folder is not None
        infos = [MessageInfo(u, len(folder.messages[u]), folder.arrived[u])
                 for u in uids if u in folder.messages and u not in folder.unsized]
        self._then("fetch_info")
        return infos

    def fetch_range(self, uid: int, offset: int, length: int) -> bytes | None:
        self.commands.append("UID FETCH")
        assert self.selected is not None
        raw = self.selected.sent(uid)
        self._then("fetch_range")
        return None if raw is None else raw[offset:offset + length]

    def _then(self, command: str) -> None:
        action = self.after.pop(command, None)
        if action is not None:
            action()


class FakeServer:
    def __init__(self) -> None:
        self.mailboxes: dict[str, dict[str, FakeFolder]] = {}
        self.refused: set[str] = set()
        self.sessions: list[FakeSession] = []
        # Handed to the next session: see FakeSession.after.
        self.after: dict[str, Callable[[], None]] = {}

    def folder(self, address: str, name: str = "INBOX") -> FakeFolder:
        return self.mailboxes.setdefault(address, {}).setdefault(name, FakeFolder())

    @contextmanager
    def open(self, address: str, token: Secret) -> Iterator[FakeSession]:
        if address in self.refused or token.reveal() != "good-token":
            raise AuthenticationError(f"{address}: AUTHENTICATE failed")
        session = FakeSession(self.mailboxes[address], self.after)
        self.sessions.append(session)
        yield session


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
        self._lock = threading.Lock()

    def create(self, name: str, raw: bytes, metadata: Mapping[str, str]) -> bool:
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
                           metadata: Callable[[], Mapping[str, str]]) -> bool:
        staged = b"".join(chunks)  # the staged blocks; nothing is visible until committed
        self.streamed.append(name)
        return self.create(name, staged, metadata())

    def list_dedup_keys(self, prefix: str) -> Iterator[tuple[str, str]]:
        for name, (_, metadata) in sorted(self.blobs.items()):
            if name.startswith(prefix):
                yield name, metadata["dedup_key"]


class FakeStateStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Checkpoint] = {}
        self.pop3_rows: dict[str, Pop3Checkpoint] = {}
        self.health: dict[str, Health] = {}
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
        previous = self.health.get(result.address, Health(result.address))
        if result.ok:
            self.health[result.address] = replace(
                previous, last_attempt_at=at, last_success_at=at, consecutive_failures=0,
                delivered_total=previous.delivered_total + result.delivered, failing_since=None,
                folder_errors="; ".join(f"{f.folder}: {f.error}" for f in result.folder_errors)
                or None)
        else:
            self.health[result.address] = replace(
                previous, last_attempt_at=at, last_error=result.error, last_error_at=at,
                consecutive_failures=previous.consecutive_failures + 1,
                failing_since=previous.failing_since or at)
        return self.health[result.address]

    def list_health(self) -> list[Health]:
        return list(self.health.values())

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

    def monotonic(self) -> float:
        self.seconds += self.tick
        return self.seconds

    def now(self) -> datetime:
        return datetime(2026, 11, 28, tzinfo=UTC)


class FakePop3Session:
    def __init__(self, maildrop: list[tuple[str, bytes]]) -> None:
        self.maildrop = list(maildrop)  # a POP3 session sees the maildrop as it was at login
        self.commands: list[str] = []

    def list_uidls(self) -> list[tuple[int, str]]:
        self.commands.append("UIDL")
        return [(number, uidl) for number, (uidl, _) in enumerate(self.maildrop, 1)]

    def retrieve(self, number: int) -> bytes:
        self.commands.append("RETR")
        return self.maildrop[number - 1][1]


class FakePop3Server:
    def __init__(self) -> None:
        self.maildrops: dict[str, list[tuple[str, bytes]]] = {}
        self.refused: set[str] = set()
        self.sessions: list[FakePop3Session] = []

    def deliver(self, address: str, uidl: str, raw: bytes) -> None:
        self.maildrops.setdefault(address, []).append((uidl, raw))

    def remove(self, address: str, uidl: str) -> None:
        """What another client's DELE does; mailferry itself never deletes."""
        self.maildrops[address] = [(u, r) for u, r in self.maildrops[address] if u != uidl]

    @contextmanager
    def open(self, address: str, token: Secret) -> Iterator[FakePop3Session]:
        if address in self.refused or token.reveal() != "good-token":
            raise AuthenticationError(f"{address}: -ERR Authentication failure")
        session = FakePop3Session(self.maildrops.setdefault(address, []))
        self.sessions.append(session)
        yield session


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
