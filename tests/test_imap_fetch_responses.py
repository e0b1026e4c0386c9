"""FETCH responses read by one pattern give what IMAPClient's parser gives; anything worded
otherwise is left to that parser."""

from __future__ import annotations

from typing import Any

import pytest
from imapclient.exceptions import ProtocolError
from imapclient.response_parser import parse_fetch_response

from shared.adapters.imap_client import fetch_responses

BODY = b"Subject: s\r\n\r\nbody with ) and {3}\r\n"


def _message(seq: int, uid: int, date: bytes = b"01-Dec-2026 18:12:16 +0000",
             body: bytes = BODY) -> list[Any]:
    line = b'%d (UID %d INTERNALDATE "%s" BODY[] {%d}' % (seq, uid, date, len(body))
    return [(line, body), b")"]


def _both(responses: list[Any]) -> tuple[list[tuple[int, dict[bytes, Any]]], list[tuple[int, Any]]]:
    ours = list(fetch_responses(list(responses)))
    theirs = [(int(uid), data) for uid, data in parse_fetch_response(list(responses), True, True).items()]
    return ours, theirs


def test_the_usual_wording_reads_as_imapclient_reads_it() -> None:
    for responses in (_message(1, 7),
                      _message(1, 7) + _message(2, 9, date=b"28-Feb-2025 23:59:59 -0800"),
                      _message(3, 11, body=b""),
                      _message(4, 12, date=b"not a date")):  # no date, as the parser says
        ours, theirs = _both(responses)
        assert ours == theirs


def _size(seq: int, uid: int, size: int, date: bytes = b"01-Dec-2026 18:12:16 +0000") -> bytes:
    return b'%d (UID %d RFC822.SIZE %d INTERNALDATE "%s")' % (seq, uid, size, date)


def test_the_usual_size_answers_read_as_imapclient_reads_them() -> None:
    for responses in ([_size(1, 7, 5000)], [_size(1, 7, 0), _size(2, 8, 10**9, b"bad")]):
        ours, theirs = _both(responses)
        assert ours == theirs
    for other in ([b'1 (UID 7 INTERNALDATE "01-Dec-2026 18:12:16 +0000" RFC822.SIZE 5)'],
                  [_size(1, 7, 5), b"2 (UID 8 FLAGS ())"], [_size(1, 7, 5) + b" "]):
        ours, theirs = _both(other)
        assert ours == theirs


def test_every_other_wording_goes_to_imapclient() -> None:
    flags_only = [b"5 (UID 13 FLAGS (\\Seen))"]
    reordered = [(b"6 (UID 14 BODY[] {%d}" % len(BODY), BODY), b' INTERNALDATE "01-Dec-2026 18:12:16 +0000")']
    short = [(b'7 (UID 15 INTERNALDATE "01-Dec-2026 18:12:16 +0000" BODY[] {999}', BODY), b")"]
    lower = [(b'8 (uid 16 internaldate "01-Dec-2026 18:12:16 +0000" body[] {%d}' % len(BODY), BODY), b")"]
    escaped = [(b'9 (UID 17 INTERNALDATE "01-Dec-2026 \\"18:12:16 +0000" BODY[] {%d}' % len(BODY), BODY), b")"]
    for responses in (flags_only, reordered, lower, escaped, _message(1, 7) + flags_only):
        ours, theirs = _both(responses)
        assert ours == theirs
    # The literal's length disagrees with what the line announced: the parser's error.
    with pytest.raises(ProtocolError, match="literal of size 999"):
        list(fetch_responses(short))
