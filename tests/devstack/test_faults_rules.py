"""The fronts' pure parts: IMAP lines as the front reads them, fault validation, and how a
fault is used up or runs out of time."""

from __future__ import annotations

import base64

import pytest

from devstack.faults.book import FaultBook
from devstack.faults.imap_wire import (
    capabilities,
    literal_at_end,
    parse_command,
    response_tag,
    rewrite_capabilities,
    rewrite_sizes,
    sasl_user,
)
from devstack.faults.rules import Fault, FaultError


def test_command_lines():
    command = parse_command(b"a7 UID FETCH 1:* (BODY.PEEK[])\r\n")
    assert command is not None and (command.tag, command.verb, command.uid) == ("a7", "FETCH", True)
    examine = parse_command(b"x EXAMINE INBOX\r\n")
    assert examine is not None and (examine.verb, examine.uid) == ("EXAMINE", False)
    assert parse_command(b"\r\n") is None and parse_command(b"DONE\r\n") is None
    assert literal_at_end(b"a APPEND INBOX {310}\r\n") == (310, True)
    assert literal_at_end(b"a APPEND INBOX {310+}\r\n") == (310, False)
    assert literal_at_end(b"* 1 FETCH (BODY[] {12}\r\n") == (12, True)
    assert literal_at_end(b"a SEARCH SUBJECT {x}\r\n") is None


def test_the_login_name_comes_from_the_sasl_initial_response_only():
    xoauth2 = base64.b64encode(b"user=ops@contoso.com\x01auth=Bearer eyJ.secret\x01\x01")
    assert sasl_user("XOAUTH2", xoauth2) == "ops@contoso.com"
    oauthbearer = base64.b64encode(b"n,a=ops@contoso.com,\x01auth=Bearer eyJ\x01\x01")
    assert sasl_user("oauthbearer", oauthbearer) == "ops@contoso.com"
    assert sasl_user("XOAUTH2", b"not base64!") is None
    assert sasl_user("PLAIN", base64.b64encode(b"\x00ops\x00pw")) is None


def test_server_lines_rewritten_as_exchange_sends_them():
    listing = capabilities(logged_in=False)
    assert "MOVE" not in listing and "CONDSTORE" not in listing and "AUTH=XOAUTH2" in listing
    assert "MOVE" in capabilities(logged_in=True)
    assert "MOVE" not in capabilities(logged_in=True, move=False)
    assert rewrite_capabilities(b"* CAPABILITY IMAP4rev1 CONDSTORE QRESYNC\r\n", "A B") == b"* CAPABILITY A B\r\n"
    assert rewrite_capabilities(b"a OK [CAPABILITY IMAP4rev1 ESEARCH] Logged in\r\n", "A") == (
        b"a OK [CAPABILITY A] Logged in\r\n")
    assert rewrite_sizes(b"* 3 FETCH (UID 9 RFC822.SIZE 1000 BODY[] {1000}\r\n", 1.5) == (
        b"* 3 FETCH (UID 9 RFC822.SIZE 1500 BODY[] {1000}\r\n")
    assert response_tag(b"a12 OK done\r\n") == "a12"
    assert response_tag(b"* 1 EXISTS\r\n") is None and response_tag(b"+ go\r\n") is None


@pytest.mark.parametrize(("data", "field"), [
    ({"kind": "answer", "text": "x", "status": "NO", "times": None}, "times"),
    ({"kind": "stall"}, "duration"),
    ({"kind": "trickle", "duration": 5, "interval": 0}, "interval"),
    ({"kind": "bye"}, "after_commands"),
    ({"kind": "bye", "after_commands": 1, "at_byte": 5}, "after_commands"),
    ({"kind": "stall", "duration": 1, "direction": "client"}, "direction"),
    ({"kind": "answer", "text": "x", "status": "-ERR"}, "status"),
    ({"kind": "answer", "text": "x", "status": "NO", "protocol": "pop3"}, "status"),
    ({"kind": "busy", "protocol": "storage", "service": "file"}, "service"),
    ({"kind": "outage", "protocol": "storage"}, "seconds"),
    ({"kind": "outage", "protocol": "storage", "seconds": 5000}, "seconds"),
    ({"kind": "stall", "duration": 10_000}, "duration"),
    ({"kind": "flood"}, "kind"),
    ({"kind": "reset", "colour": "red"}, "colour"),
])
def test_faults_that_cannot_be_carried_out_or_would_not_end_are_refused(data, field):
    with pytest.raises(FaultError, match=field):
        Fault.from_json(data)


def test_a_fault_is_used_up_after_times_or_runs_out_after_seconds():
    now = [100.0]
    book = FaultBook(clock=lambda: now[0])
    twice = book.add(Fault.from_json({"kind": "answer", "text": "x", "status": "NO", "on": "fetch",
                                      "mailbox": "Ops@Contoso.com", "times": 2}))
    assert book.matching("imap", "answer", mailbox="ops@contoso.com", verb="SELECT") == []
    assert book.matching("pop3", "answer", mailbox="ops@contoso.com", verb="FETCH") == []
    assert book.matching("imap", "answer", mailbox="other@contoso.com", verb="FETCH") == []
    assert book.take_first("imap", "answer", mailbox="OPS@contoso.com", verb="FETCH") is twice
    assert book.take_first("imap", "answer", mailbox="ops@contoso.com", verb="FETCH") is twice
    assert book.take_first("imap", "answer", mailbox="ops@contoso.com", verb="FETCH") is None
    timed = book.add(Fault.from_json({"kind": "reset", "times": None, "seconds": 5}))
    assert book.take(timed) and book.take(timed)
    now[0] += 5
    assert not book.take(timed) and book.live() == []
