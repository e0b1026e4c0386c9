"""The IMAP front cutting sessions on real sockets: BYE after commands or bytes, resets
(RST) in either direction, stalls and trickles, at offsets a test scripts."""

from __future__ import annotations

import imaplib
import re
import time

import pytest

from devstack.stack import Stack
from tests.devstack.raw_clients import fetch_all, imap_login, message, raw_imap_login


@pytest.fixture
def mailbox(stack: Stack, new_mailbox) -> str:
    """A mailbox holding three messages of about 3 KB."""
    address: str = new_mailbox()
    stack.append_many(address, "INBOX", [message(n) for n in range(3)])
    return address


def test_bye_after_n_commands_replaces_the_next_answer(stack, faults, mailbox):
    faults.bye(mailbox, after_commands=2)
    conn = imap_login(stack, faults.imap_port, mailbox)
    conn.select("INBOX", readonly=True)
    conn.noop()
    with pytest.raises(imaplib.IMAP4.abort, match=re.escape("Connection closed. 14")):
        conn.uid("FETCH", "1", "(BODY.PEEK[])")
    conn.shutdown()


def test_bye_after_n_bytes_inside_a_fetch_literal_cuts_the_message(stack, faults, mailbox):
    expected = stack.server_messages(mailbox, "INBOX")[1]
    fault_id = faults.bye(mailbox, at_byte=1000, on="FETCH", in_literal=True)
    with raw_imap_login(stack, faults.imap_port, mailbox) as raw:
        raw.send(b"a2 EXAMINE INBOX\r\n")
        while not raw.line().startswith(b"a2 OK"):
            pass
        raw.send(b"a3 UID FETCH 1 (BODY.PEEK[])\r\n")
        head = raw.line()
        assert head.endswith(b"{%d}\r\n" % len(expected))
        assert raw.rest() == expected[:1000]  # no BYE line inside the literal, then EOF
    assert "closed mid-response" in faults.wait_for_event(fault_id)[0].detail


def test_bye_at_a_response_boundary_sends_the_bye_line(stack, faults, mailbox):
    faults.bye(mailbox, at_byte=0, on="NOOP", text="Connection closed. 14")
    with raw_imap_login(stack, faults.imap_port, mailbox) as raw:
        raw.send(b"a2 NOOP\r\n")
        assert raw.rest() == b"* BYE Connection closed. 14\r\n"


def test_reset_at_a_byte_of_a_fetch_literal_is_an_rst(stack, faults, mailbox):
    fault_id = faults.reset(mailbox, at_byte=500, on="FETCH", in_literal=True)
    with raw_imap_login(stack, faults.imap_port, mailbox) as raw:
        raw.send(b"a2 EXAMINE INBOX\r\n")
        while not raw.line().startswith(b"a2 OK"):
            pass
        raw.send(b"a3 UID FETCH 1:* (BODY.PEEK[])\r\n")
        assert raw.ends_with_reset()
    assert faults.wait_for_event(fault_id)[0].detail.startswith("RST after")
    # imaplib sees the connection end in the middle of the FETCH
    faults.reset(mailbox, at_byte=500, on="FETCH", in_literal=True)
    conn = imap_login(stack, faults.imap_port, mailbox)
    conn.select("INBOX", readonly=True)
    with pytest.raises((OSError, imaplib.IMAP4.abort)):
        conn.uid("FETCH", "1:*", "(BODY.PEEK[])")
    conn.shutdown()


def test_reset_on_the_clients_bytes(stack, faults, mailbox):
    fault_id = faults.reset(mailbox, direction="client", at_byte=0)
    with raw_imap_login(stack, faults.imap_port, mailbox) as raw:
        raw.send(b"a2 SELECT INBOX\r\n")
        assert raw.ends_with_reset()
    assert "bytes from the client" in faults.wait_for_event(fault_id)[0].detail


def test_a_bye_closes_with_a_fin_not_an_rst(stack, faults, mailbox):
    faults.bye(mailbox, after_commands=0)
    with raw_imap_login(stack, faults.imap_port, mailbox) as raw:
        raw.send(b"a2 NOOP\r\n")
        assert not raw.ends_with_reset()


def test_a_stall_delays_the_response_by_its_duration_then_it_continues(stack, faults, mailbox):
    faults.stall(mailbox, duration=3, on="FETCH", at_byte=100)
    conn = imap_login(stack, faults.imap_port, mailbox)
    started = time.monotonic()
    assert fetch_all(conn) == stack.server_messages(mailbox, "INBOX")
    assert time.monotonic() - started >= 2.9
    conn.logout()


def test_a_stall_that_closes(stack, faults, mailbox):
    faults.stall(mailbox, duration=1, on="FETCH", then="close")
    conn = imap_login(stack, faults.imap_port, mailbox)
    conn.select("INBOX", readonly=True)
    started = time.monotonic()
    with pytest.raises(imaplib.IMAP4.abort):
        conn.uid("FETCH", "1", "(BODY.PEEK[])")
    assert time.monotonic() - started >= 0.9
    conn.shutdown()


def test_a_trickle_sends_one_byte_per_interval_and_never_goes_quiet_long(stack, faults, mailbox):
    faults.trickle(mailbox, interval=0.2, duration=30, on="NOOP")
    with raw_imap_login(stack, faults.imap_port, mailbox) as raw:
        raw.sock.settimeout(1.0)  # a read timeout that a trickle never lets fire
        raw.send(b"a2 NOOP\r\n")
        started = time.monotonic()
        received = b""
        while not received.endswith(b"\r\n"):
            chunk = raw.sock.recv(100)
            assert len(chunk) == 1
            received += chunk
        assert received.startswith(b"a2 OK")
        assert time.monotonic() - started >= 0.2 * (len(received) - 1) * 0.9


def test_a_fault_armed_during_a_session_hits_it_once(stack, faults, mailbox):
    with raw_imap_login(stack, faults.imap_port, mailbox) as raw:
        fault_id = faults.stall(mailbox, duration=1.5, times=2)  # at byte 0: already passed
        for expect_delay in (True, False):
            started = time.monotonic()
            raw.send(b"a2 NOOP\r\n")
            assert raw.line().startswith(b"a2 OK")
            assert (time.monotonic() - started >= 1.4) == expect_delay
    assert len(faults.events(fault_id=fault_id)) == 1
    assert [f["used"] for f in faults.live_faults()] == [1]  # the next connection gets the second
