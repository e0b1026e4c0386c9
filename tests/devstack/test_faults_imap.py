"""The IMAP front on real sockets: Exchange's words and failures, scripted per mailbox, in
front of the real Dovecot."""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
import threading
import time

import pytest

from devstack.faults import Connections, FaultError, FaultFront
from devstack.faults.imap_wire import POST_LOGIN_CAPABILITIES, PRE_LOGIN_CAPABILITIES
from devstack.stack import Stack
from tests.devstack.raw_clients import RawTls, fetch_all, imap_login, message, raw_imap_login, sasl_ir

THROTTLED = b"Request is throttled. Suggested Backoff Time: 30000 milliseconds"


@pytest.fixture
def mailbox(stack: Stack, new_mailbox) -> str:
    """A mailbox holding three messages of about 3 KB."""
    address: str = new_mailbox()
    stack.append_many(address, "INBOX", [message(n) for n in range(3)])
    return address


def test_without_faults_dovecot_answers_through_exchange_greeting_and_capabilities(stack, faults, mailbox):
    with RawTls(stack, faults.imap_port) as raw:
        assert raw.line().startswith(b"* OK The Microsoft Exchange IMAP4 service is ready. [")
        raw.send(b"a0 CAPABILITY\r\n")
        assert raw.line() == b"* CAPABILITY " + PRE_LOGIN_CAPABILITIES.encode() + b"\r\n"
        assert raw.line().startswith(b"a0 OK")
    for absent in ("CONDSTORE", "QRESYNC", "ESEARCH", "MOVE"):
        assert absent not in PRE_LOGIN_CAPABILITIES.split()

    conn = imap_login(stack, faults.imap_port, mailbox)
    typ, caps = conn.capability()
    assert caps[-1].decode() == POST_LOGIN_CAPABILITIES
    assert fetch_all(conn) == stack.server_messages(mailbox, "INBOX")
    conn.logout()

    faults.wait_until_closed(mailbox)
    assert faults.connections(mailbox) == Connections(current=0, peak=1, total=1)
    commands = faults.commands(mailbox)
    assert commands["AUTHENTICATE"] == 1 and commands["FETCH"] == 1 and commands["EXAMINE"] == 1
    assert faults.events() == []


def test_throttled_authenticate_gets_exchanges_words_then_bye_then_close(stack, faults, mailbox):
    fault_id = faults.throttle(mailbox, backoff_ms=30000, bye=True)
    ir = sasl_ir(stack, mailbox)
    with RawTls(stack, faults.imap_port) as raw:
        raw.line()
        raw.send(b"a1 AUTHENTICATE XOAUTH2 " + ir + b"\r\n")
        assert raw.line() == b"a1 NO " + THROTTLED + b"\r\n"
        assert raw.line() == b"* BYE Connection closed. 14\r\n"
        assert raw.rest() == b""
    assert [e.detail for e in faults.events(fault_id=fault_id)] == [
        "NO " + THROTTLED.decode() + " to AUTHENTICATE, then BYE"]
    # Used once: the next login goes through. The token never reaches the fronts' log.
    imap_login(stack, faults.imap_port, mailbox).logout()
    token = ir.decode()
    assert token not in faults.directory.joinpath("faults.log").read_text()


@pytest.mark.parametrize("status", ["NO", "BAD"])
def test_a_throttled_fetch_is_refused_in_exchanges_words_and_the_next_fetch_works(
        stack, faults, mailbox, status):
    faults.throttle(mailbox, on="FETCH", status=status, backoff_ms=30000)
    conn = imap_login(stack, faults.imap_port, mailbox)
    conn.select("INBOX", readonly=True)
    if status == "NO":
        assert conn.uid("FETCH", "1", "(BODY.PEEK[])") == ("NO", [THROTTLED])
    else:
        with pytest.raises(imaplib.IMAP4.error, match=re.escape("Request is throttled. Suggested Backoff Time: 30000")):
            conn.uid("FETCH", "1", "(BODY.PEEK[])")
    assert fetch_all(conn) == stack.server_messages(mailbox, "INBOX")
    conn.logout()


def test_throttle_words_can_come_in_an_untagged_bye(stack, faults, mailbox):
    faults.throttle(mailbox, on="SELECT", status="BYE", backoff_ms=30000)
    with raw_imap_login(stack, faults.imap_port, mailbox) as raw:
        raw.send(b"a2 SELECT INBOX\r\n")
        assert raw.rest() == b"* BYE " + THROTTLED + b"\r\n"


@pytest.mark.parametrize(("arm", "command", "expected"), [
    ("not_connected", b"AUTHENTICATE", b"a1 BAD User is authenticated but not connected.\r\n"),
    ("auth_failed", b"AUTHENTICATE", b"a1 NO AUTHENTICATE failed.\r\n"),
    ("argument_error", b"UID FETCH 1 (BODY.PEEK[])", b"a1 BAD Command Argument Error. 11\r\n"),
])
def test_canned_exchange_answers(stack, faults, mailbox, arm, command, expected):
    getattr(faults, arm)(mailbox)
    with RawTls(stack, faults.imap_port) as raw:
        raw.line()
        if command != b"AUTHENTICATE":
            raw.send(b"a0 AUTHENTICATE XOAUTH2 " + sasl_ir(stack, mailbox) + b"\r\n")
            assert raw.line().startswith(b"a0 OK")
            raw.send(b"a9 SELECT INBOX\r\n")
            while not raw.line().startswith(b"a9 OK"):
                pass
            raw.send(b"a1 " + command + b"\r\n")
        else:
            raw.send(b"a1 AUTHENTICATE XOAUTH2 " + sasl_ir(stack, mailbox) + b"\r\n")
        assert raw.line() == expected
        raw.send(b"a3 NOOP\r\n")  # the session goes on
        assert raw.line().startswith(b"a3 OK")


def test_rfc822_size_is_reported_off_by_a_factor_but_the_bytes_are_exact(stack, faults, mailbox):
    faults.size_factor(mailbox, 0.5)
    expected = stack.server_messages(mailbox, "INBOX")
    conn = imap_login(stack, faults.imap_port, mailbox)
    conn.select("INBOX", readonly=True)
    typ, data = conn.uid("FETCH", "1:*", "(UID RFC822.SIZE)")
    sizes = {int(m.group(1)): int(m.group(2))
             for m in (re.search(rb"UID (\d+) RFC822.SIZE (\d+)", d) for d in data if isinstance(d, bytes))
             if m is not None}
    assert sizes == {uid: round(len(raw) * 0.5) for uid, raw in expected.items()}
    assert fetch_all(conn) == expected
    conn.logout()


def test_one_connection_too_many_is_refused_as_exchange_does(stack, faults, mailbox):
    faults.max_connections(mailbox, 2)
    first = imap_login(stack, faults.imap_port, mailbox)
    second = imap_login(stack, faults.imap_port, mailbox)
    with pytest.raises(imaplib.IMAP4.error, match=re.escape("User is authenticated but not connected.")):
        imap_login(stack, faults.imap_port, mailbox)
    assert faults.connections(mailbox).current >= 2
    for conn in (first, second):
        conn.logout()
    faults.wait_until_closed(mailbox)
    assert faults.connections(mailbox).peak == 3
    imap_login(stack, faults.imap_port, mailbox).logout()  # the cap refused once, as scripted


def test_concurrent_connections_are_counted_per_mailbox(stack, faults, mailbox, new_mailbox):
    other = new_mailbox()
    conns = [imap_login(stack, faults.imap_port, mailbox) for _ in range(3)]
    imap_login(stack, faults.imap_port, other).logout()
    assert faults.connections(mailbox).current == 3
    for conn in conns:
        conn.logout()
    faults.wait_until_closed(mailbox)
    assert faults.connections(mailbox).peak == 3 and faults.connections(mailbox).total == 3
    assert faults.connections(other).peak == 1


def test_move_can_be_hidden(stack, faults, mailbox):
    faults.hide_move(mailbox)
    conn = imap_login(stack, faults.imap_port, mailbox)
    assert b"MOVE" not in conn.capability()[1][-1].split()
    conn.select("INBOX")
    with pytest.raises(imaplib.IMAP4.error, match=re.escape("Command Error. 12")):
        conn.uid("MOVE", "1", "Trash")
    conn.logout()
    conn = imap_login(stack, faults.imap_port, mailbox)
    assert b"MOVE" in conn.capability()[1][-1].split()
    conn.logout()


def test_a_fault_for_a_time_ends_by_itself(stack, faults, mailbox):
    faults.throttle(mailbox, times=None, seconds=1.5)
    for _ in range(2):
        with pytest.raises(imaplib.IMAP4.error, match="Request is throttled"):
            imap_login(stack, faults.imap_port, mailbox)
    time.sleep(1.6)
    imap_login(stack, faults.imap_port, mailbox).logout()
    assert faults.live_faults() == []


def test_faults_for_one_mailbox_leave_the_others_alone(stack, faults, mailbox, new_mailbox):
    other = new_mailbox()
    faults.throttle(mailbox, times=5)
    imap_login(stack, faults.imap_port, other).logout()
    assert len(faults.live_faults()) == 1


@pytest.mark.parametrize("bad", [
    {"kind": "stall", "mailbox": "a@b.c"},
    {"kind": "answer", "text": "x", "status": "NO", "times": None},
])
def test_a_fault_that_cannot_be_carried_out_is_refused_with_the_field_named(faults, bad):
    with pytest.raises(FaultError, match=r"duration|times"):
        faults.add(bad)


def test_the_control_api_wants_its_key(faults: FaultFront):
    from devstack.faults import FaultClient

    with pytest.raises(RuntimeError, match="401"):
        FaultClient(faults.base_url, "wrong").live_faults()


def test_a_plain_tcp_client_does_not_get_through(stack, faults):
    with socket.create_connection(("127.0.0.1", faults.imap_port), timeout=5) as sock:
        sock.sendall(b"a1 CAPABILITY\r\n")
        sock.settimeout(12)
        try:
            data = sock.recv(100)
        except (ConnectionResetError, TimeoutError):
            data = b""
        assert b"CAPABILITY" not in data
    # and TLS still works afterwards
    context = ssl.create_default_context(cafile=str(stack.ca_pem))
    with context.wrap_socket(socket.create_connection(("127.0.0.1", faults.imap_port)),
                             server_hostname="127.0.0.1") as tls:
        assert tls.recv(100).startswith(b"* OK")


def test_sessions_through_the_front_run_in_parallel(stack, faults, mailbox):
    errors: list[BaseException] = []

    def session() -> None:
        try:
            conn = imap_login(stack, faults.imap_port, mailbox)
            fetch_all(conn)
            conn.logout()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=session) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert faults.commands(mailbox)["FETCH"] == 4


def test_literals_from_the_client_pass_through_both_ways(stack, faults, mailbox):
    synchronizing, non_synchronizing = message(100), message(101)
    conn = imap_login(stack, faults.imap_port, mailbox)
    assert conn.append("INBOX", "", None, synchronizing)[0] == "OK"  # imaplib waits for "+"
    conn.logout()
    with raw_imap_login(stack, faults.imap_port, mailbox) as raw:
        raw.send(b"a2 APPEND INBOX {%d+}\r\n" % len(non_synchronizing) + non_synchronizing + b"\r\n")
        assert raw.line().startswith(b"a2 OK [APPENDUID")
    stored = list(stack.server_messages(mailbox, "INBOX").values())
    assert stored[-2:] == [synchronizing, non_synchronizing]


def test_a_refused_login_reads_as_dovecots_answer_through_the_front(stack, faults, new_mailbox):
    ungranted = new_mailbox(granted=False)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap_login(stack, faults.imap_port, ungranted)
    assert faults.commands(ungranted)["AUTHENTICATE"] == 1
