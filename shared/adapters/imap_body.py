"""A large message's ``UID FETCH`` read as it arrives, its body handed out in pieces: imaplib
reads a literal whole, so this answer is read here, line by line, on imaplib's connection."""

from __future__ import annotations

import contextlib
import imaplib
import re
from collections.abc import Generator

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from shared.adapters.imap_client import Failure, fetch_refused
from shared.adapters.mail_socket import Pace

# The start of the answer to ``UID FETCH n (BODY.PEEK[])``: the body as a literal (other
# items may come before it). Dovecot sends ``BODY[] NIL`` for a message another session
# expunged: no literal, so that line is read past like any other.
_BODY_START = re.compile(rb"\* \d+ FETCH \(.*\bBODY\[\] \{(?P<length>\d+)\}$", re.IGNORECASE)
_LITERAL_AT_END = re.compile(rb"\{(\d+)\}$")
_DISCARD_PIECE = 1024 * 1024


def fetch_body_pieces(client: IMAPClient, pace: Pace, uid: int, piece: int, *,
                      failure: Failure) -> Generator[bytes, None, None] | None:
    """One message's body in pieces of ``piece`` bytes (the last shorter) as they arrive, from
    one ``UID FETCH``: memory holds a piece, not the message, and the server sends it in one
    go (ranges cost a round trip each). None when the server sends no body for it.

    Closing the pieces before their end reads the rest of the answer and drops it, so the
    session stays usable; if that fails too, the connection is marked broken."""
    imap = client._imap
    try:
        pace.new_answer()
        tag = imap._command("UID", "FETCH", str(uid), "(BODY.PEEK[])")
        imap.tagged_commands.pop(tag, None)  # the answer is read here, not by imaplib
        pace.broken = True  # until the whole answer is read
        while True:
            line = imap._get_line()
            if line.startswith(tag + b" "):
                pace.broken = False
                _completed(line, failure)
                return None  # no body: the message is gone
            start = _BODY_START.match(line)
            if start is not None:
                return _body(imap, pace, tag, int(start["length"]), piece, failure)
            _read_past(imap, line)
    except (IMAPClientError, OSError) as e:
        raise failure(e, "UID FETCH") from e


def _body(imap: imaplib.IMAP4, pace: Pace, tag: bytes, length: int, piece: int,
          failure: Failure) -> Generator[bytes, None, None]:
    remaining = length
    finished = False
    try:
        while remaining:
            data = imap.read(min(piece, remaining))
            if not data:
                raise imaplib.IMAP4.abort("socket error: EOF in the middle of a message")
            remaining -= len(data)
            yield data
        tagged = _read_to(imap, tag)
        finished = True
        _completed(tagged, failure)
    except GeneratorExit:
        # Left before the end (its upload failed): read the rest and drop it.
        with contextlib.suppress(IMAPClientError, OSError):
            _discard(imap, remaining)
            _read_to(imap, tag)
            finished = True
        raise
    except (IMAPClientError, OSError) as e:
        raise failure(e, "UID FETCH") from e
    finally:
        pace.broken = not finished  # answers and commands no longer line up


def _read_to(imap: imaplib.IMAP4, tag: bytes) -> bytes:
    """Read past the rest of the answer; its tagged line."""
    while True:
        line: bytes = imap._get_line()
        if line.startswith(tag + b" "):
            return line
        _read_past(imap, line)


def _read_past(imap: imaplib.IMAP4, line: bytes) -> None:
    """Read past one untagged line and whatever literals it carries; a BYE is kept, as
    imaplib keeps it, for the error that follows."""
    if line.startswith(b"* BYE"):
        imap._append_untagged("BYE", line[6:])
    while (literal := _LITERAL_AT_END.search(line)) is not None:
        _discard(imap, int(literal[1]))
        line = imap._get_line()


def _discard(imap: imaplib.IMAP4, count: int) -> None:
    while count > 0:
        data = imap.read(min(_DISCARD_PIECE, count))
        if not data:
            raise imaplib.IMAP4.abort("socket error: EOF")
        count -= len(data)


def _completed(tagged: bytes, failure: Failure) -> None:
    """Raise the failure a tagged NO or BAD stands for."""
    _, status, words = [*tagged.split(b" ", 2), b"", b""][:3]
    if status.upper() != b"OK":
        refused = fetch_refused(status.decode("ascii", "replace"), words.decode("utf-8", "replace"))
        raise failure(refused, "UID FETCH")
