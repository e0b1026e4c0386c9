"""A large IMAP message read in ranges and staged block by block, so memory stays bounded;
its blob is committed only when every range arrived."""

from __future__ import annotations

from collections.abc import Iterator

from shared.dedup import MessageDigest
from shared.delivery import SKIPPED, Outcome, Written
from shared.errors import MailServerError
from shared.model import MessageInfo
from shared.naming import streamed_metadata
from shared.ports import MailSession, MessageSink, ThreadStart, no_thread_setup
from shared.resync import OldDeliveries

STREAM_CHUNK = 4 * 1024 * 1024


class Gone(Exception):
    """The server has no such message now (expunged while it was read)."""


class StreamedDelivery:
    """Delivers one folder's large messages; raises Gone for a message the server no longer
    sends (nothing is committed for it)."""

    def __init__(self, session: MailSession, sink: MessageSink, *, address: str, folder: str,
                 uidvalidity: int, on_thread_start: ThreadStart = no_thread_setup) -> None:
        self._session = session
        self._on_thread_start = on_thread_start
        self._sink = sink
        self._address = address
        self._folder = folder
        self._uidvalidity = uidvalidity

    def deliver(self, name: str, info: MessageInfo, old: OldDeliveries | None) -> Written:
        """Stream ``info``'s message into blob ``name``; ``old`` when it may have been delivered
        under an earlier UIDVALIDITY (SKIPPED when it was)."""
        if self._sink.exists(name):
            return Written(Outcome.PRESENT)
        if old:
            # Its key needs every byte: read it once without storing, then decide.
            seen = MessageDigest()
            for chunk in self._ranges(info.uid):
                seen.update(chunk)
            if old.take(seen.dedup_key(info.internal_date), info.internal_date):
                return SKIPPED
        digest = MessageDigest()

        def chunks() -> Iterator[bytes]:
            for chunk in self._ranges(info.uid):
                digest.update(chunk)
                yield chunk

        created = self._sink.create_from_chunks(name, chunks(), lambda: streamed_metadata(
            self._address, self._folder, self._uidvalidity, info, digest),
            on_thread_start=self._on_thread_start)
        return Written(Outcome.CREATED if created else Outcome.PRESENT, digest.size)

    def _ranges(self, uid: int) -> Iterator[bytes]:
        """The message's bytes in ranges; raises Gone when the server has no such message."""
        offset = 0
        while True:
            chunk = self._session.fetch_range(uid, offset, STREAM_CHUNK)
            if chunk is None:
                raise Gone
            if len(chunk) > STREAM_CHUNK:
                raise MailServerError(
                    f"{self._address}/{self._folder}: the server sent {len(chunk)} bytes of UID "
                    f"{uid} for a range of {STREAM_CHUNK}; nothing was stored, the next run "
                    "tries again.")
            if chunk:
                yield chunk
            if len(chunk) < STREAM_CHUNK:  # a short range is the message's end
                return
            offset += len(chunk)
