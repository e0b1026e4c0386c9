"""IMAPClient whose imaplib connection reads every answer through a paced file
(``mail_socket``): imaplib reads only through ``read()`` and ``readline()``."""

from __future__ import annotations

import base64
import imaplib
import io
import re
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
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


# Maps an error of a command (the error, the command) to the project's error.
Failure = Callable[[BaseException, str], MailferryError]


def fetch_refused(status: str, words: str) -> IMAPClientError:
    """A tagged NO or BAD to UID FETCH, worded as IMAPClient words it (the throttling and
    failure kinds read these words)."""
    return IMAPClientError(f"UID FETCH failed: {status} {words}")


def stream_fetch(client: IMAPClient, pace: Pace, uids: Sequence[int], items: str, *,
                 failure: Failure) -> Iterator[tuple[int, dict[bytes, Any]]]:
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
        raise failure(fetch_refused(status, words), "UID FETCH")


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
