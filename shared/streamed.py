"""A large IMAP message read piece by piece and staged block by block, so memory stays
bounded; its blob is committed only when every piece arrived."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import closing

from shared.dedup import MessageDigest
from shared.delivery import SKIPPED, Outcome, Written
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
            with closing(self._pieces(info.uid)) as once:
                for piece in once:
                    seen.update(piece)
            if old.take(seen.dedup_key(info.internal_date), info.internal_date):
                return SKIPPED
        digest = MessageDigest()

        def pieces() -> Generator[bytes, None, None]:
            with closing(self._pieces(info.uid)) as body:
                for piece in body:
                    digest.update(piece)
                    yield piece

        with closing(pieces()) as body:  # an upload that failed leaves the rest unread
            created = self._sink.create_from_chunks(name, body, lambda: streamed_metadata(
                self._address, self._folder, self._uidvalidity, info, digest),
                on_thread_start=self._on_thread_start)
        return Written(Outcome.CREATED if created else Outcome.PRESENT, digest.size)

    def _pieces(self, uid: int) -> Generator[bytes, None, None]:
        """The message's bytes as they arrive; raises Gone when the server has no such message."""
        body = self._session.fetch_pieces(uid, STREAM_CHUNK)
        if body is None:
            raise Gone
        with closing(body):
            yield from body
