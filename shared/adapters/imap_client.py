"""IMAPClient whose imaplib connection reads every answer through a paced file
(``mail_socket``): imaplib reads only through ``read()`` and ``readline()``."""

from __future__ import annotations

import base64
import contextlib
import imaplib
import io
import re
import socket
import ssl
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import date
from typing import Any

from imapclient import IMAPClient
from imapclient.datetime_util import parse_to_datetime
from imapclient.exceptions import IMAPClientError
from imapclient.imap4 import IMAP4WithTimeout
from imapclient.imapclient import join_message_ids
from imapclient.response_parser import parse_fetch_response
from imapclient.tls import IMAP4_TLS

from shared.adapters.mail_socket import Pace, paced_file
from shared.errors import MailferryError


class _PacedReads:
    """Mixed into imaplib's IMAP4 classes: answers come through a paced file of the current
    socket (a new one after STARTTLS)."""

    pace: Pace
    sock: socket.socket
    _paced: tuple[socket.socket, io.BufferedReader] | None = None

    def _answers(self) -> io.BufferedReader:
        if self._paced is None or self._paced[0] is not self.sock:
            self._paced = (self.sock, paced_file(self.sock, self.pace))
        return self._paced[1]

    def read(self, size: int) -> bytes:
        return self._answers().read(size)

    def readline(self) -> bytes:
        limit = imaplib._MAXLINE  # type: ignore[attr-defined]
        line = self._answers().readline(limit + 1)
        if len(line) > limit:
            raise imaplib.IMAP4.error(f"got more than {limit} bytes")
        return line


class _PacedTls(_PacedReads, IMAP4_TLS):  # type: ignore[misc]
    def __init__(self, host: str, port: int, context: ssl.SSLContext, pace: Pace) -> None:
        self.pace = pace
        super().__init__(host, port, context, pace.connect_timeout())


class _PacedPlain(_PacedReads, IMAP4WithTimeout):  # type: ignore[misc]
    def __init__(self, host: str, port: int, pace: Pace) -> None:
        self.pace = pace
        super().__init__(host, port, pace.connect_timeout())


class PacedImapClient(IMAPClient):  # type: ignore[misc]
    """IMAPClient over a connection read within ``pace``, from the greeting on."""

    def __init__(self, host: str, port: int, *, tls: bool, ssl_context: ssl.SSLContext,
                 pace: Pace) -> None:
        self.pace = pace
        super().__init__(host, port, ssl=tls, ssl_context=ssl_context, timeout=pace.connect_timeout())
        # IMAPClient turns imaplib's debug output up to 5, and imaplib then formats the
        # repr of every message it receives for a log line, whether or not the logger
        # wants it: most of a large fetch's CPU. IMAPClient's own DEBUG log remains.
        self._imap.debug = 0

    def _create_IMAP4(self) -> imaplib.IMAP4:  # noqa: N802 - IMAPClient's name
        if self.ssl:
            return _PacedTls(self.host, self.port, self.ssl_context, self.pace)
        return _PacedPlain(self.host, self.port, self.pace)


def authenticate_at_once(client: IMAPClient, mechanism: str, initial: bytes) -> None:
    """AUTHENTICATE with the initial response on the command line (SASL-IR, RFC 4959): one
    round trip less than imaplib's ``authenticate``, which waits for a ``+`` first. A server
    that refuses sends its reason as a challenge and waits for an empty answer, then says NO.

    The line is sent as is, not through imaplib's ``_command``: imaplib keeps a history of
    the command lines it formats, and this one holds the token."""
    imap = client._imap
    tag = imap._new_tag()
    imap.send(tag + f" AUTHENTICATE {mechanism} ".encode() + base64.b64encode(initial) + b"\r\n")
    while imap.tagged_commands[tag] is None:
        if imap._get_response() is None:  # a challenge
            imap.send(b"\r\n")
    # As after imaplib's own commands: a BYE raises, a BAD raises with the server's words.
    status, said = imap._command_complete("AUTHENTICATE", tag)
    if status != "OK":
        raise IMAPClientError(said[-1].decode("utf-8", "replace"))
    imap.state = "AUTH"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def uid_search(client: IMAPClient, *criteria: str | date) -> list[int]:
    """``UID SEARCH`` with ASCII criteria (a date as IMAP writes it), through imaplib.
    IMAPClient's ``search`` first asks for the capabilities once logged in (whether it may
    send literals without waiting): a round trip more in every session, for criteria that
    never need a literal."""
    imap = client._imap
    words = [search_date(c) if isinstance(c, date) else c for c in criteria]
    status, data = imap.uid("SEARCH", *words)  # a BAD raises; a BYE aborts
    if status != "OK":  # as IMAPClient words it
        raise IMAPClientError(f"SEARCH failed: {bytes(data[-1] or b'').decode('utf-8', 'replace')}")
    return [int(uid) for line in data if line for uid in bytes(line).split()]


def search_date(day: date) -> str:
    """An IMAP search date (``1-Dec-2026``), whatever the locale."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def stream_fetch(client: IMAPClient, pace: Pace, uids: Sequence[int], items: str, *,
                 failure: Callable[[BaseException, str], MailferryError],
                 ) -> Iterator[tuple[int, dict[bytes, Any]]]:
    """``UID FETCH`` read one response at a time: imaplib reads each one whole, literals
    included, so every one handed out is complete. ``failure`` maps an error of the command."""
    if not uids:
        return
    imap = client._imap
    finished = False
    try:
        pace.new_answer()
        tag = imap._command("UID", "FETCH", join_message_ids(list(uids)), f"({items})")
        while imap.tagged_commands[tag] is None:
            imap._get_response()
            imap._check_bye()
            yield from fetch_responses(imap.untagged_responses.pop("FETCH", []))
        status, said = imap.tagged_commands.pop(tag)
        finished = True
    except (IMAPClientError, OSError) as e:
        raise failure(e, "UID FETCH") from e
    finally:
        if not finished:
            pace.broken = True  # left in the middle of an answer
    if status != "OK":
        words = b" ".join(s for s in said if isinstance(s, bytes)).decode("utf-8", "replace")
        raise failure(IMAPClientError(f"UID FETCH failed: {status} {words}"), "UID FETCH")


# The answers to the poll's two FETCHes as Dovecot words them: ``BODY.PEEK[] INTERNALDATE``
# (one line, then the literal) and ``RFC822.SIZE INTERNALDATE`` (one line). IMAPClient's
# parser reads each line a character at a time: a tenth of a small message's client CPU.
# Any other wording goes to that parser.
_DATE = rb'INTERNALDATE "(?P<date>[^"\\]*)"'
_BODY_FETCH = re.compile(rb"(?P<seq>\d+) \(UID (?P<uid>\d+) " + _DATE + rb" BODY\[\] \{(?P<length>\d+)\}")
_SIZE_FETCH = re.compile(rb"(?P<seq>\d+) \(UID (?P<uid>\d+) RFC822\.SIZE (?P<size>\d+) " + _DATE + rb"\)")


def fetch_responses(responses: list[Any]) -> Iterator[tuple[int, dict[bytes, Any]]]:
    """Untagged FETCH responses, as imaplib keeps them, by UID: what IMAPClient's
    ``parse_fetch_response`` gives, with the usual wordings read by one pattern each."""
    quick = _quick_fetches(responses)
    if quick is None:
        for uid, data in parse_fetch_response(responses, True, True).items():
            yield int(uid), data
        return
    yield from quick


def _quick_fetches(responses: list[Any]) -> list[tuple[int, dict[bytes, Any]]] | None:
    """Each response read by a pattern, or None if any is worded otherwise."""
    parsed: list[tuple[int, dict[bytes, Any]]] = []
    items = iter(responses)
    for item in items:
        if isinstance(item, tuple) and len(item) == 2:
            line, literal = item
            found = _BODY_FETCH.fullmatch(line)
            if (found is None or int(found["length"]) != len(literal)
                    or next(items, None) != b")"):
                return None
            data: dict[bytes, Any] = {b"BODY[]": literal}
        elif isinstance(item, bytes) and (found := _SIZE_FETCH.fullmatch(item)) is not None:
            data = {b"RFC822.SIZE": int(found["size"])}
        else:
            return None
        try:
            data[b"INTERNALDATE"] = parse_to_datetime(found["date"], normalise=True)
        except ValueError:
            data[b"INTERNALDATE"] = None  # as IMAPClient's parser: an unreadable date is no date
        data[b"SEQ"] = int(found["seq"])
        parsed.append((int(found["uid"]), data))
    return parsed


# The start of the answer to ``UID FETCH n (BODY.PEEK[])``: the body as a literal (other
# items may come before it). Dovecot sends ``BODY[] NIL`` for a message another session
# expunged: no literal, so that line is read past like any other.
_BODY_START = re.compile(rb"\* \d+ FETCH \(.*\bBODY\[\] \{(?P<length>\d+)\}$", re.IGNORECASE)
_LITERAL_AT_END = re.compile(rb"\{(\d+)\}$")
_DISCARD_PIECE = 1024 * 1024

Failure = Callable[[BaseException, str], MailferryError]


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
    """Raise the failure a tagged NO or BAD stands for, as ``stream_fetch`` words it."""
    _, status, words = [*tagged.split(b" ", 2), b"", b""][:3]
    if status.upper() != b"OK":
        said = f"{status.decode('ascii', 'replace')} {words.decode('utf-8', 'replace')}"
        raise failure(IMAPClientError(f"UID FETCH failed: {said}"), "UID FETCH")
