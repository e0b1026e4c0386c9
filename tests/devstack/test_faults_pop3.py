"""The POP3 front on real sockets: Exchange's greeting and CAPA, and faults per mailbox."""

from __future__ import annotations

import poplib
import re
import time

import pytest

from devstack.stack import Stack
from tests.devstack.raw_clients import RawTls, message, pop3_login, sasl_ir

THROTTLED = b"-ERR Request is throttled. Suggested Backoff Time: 60000 milliseconds\r\n"


@pytest.fixture
def mailbox(stack: Stack, new_mailbox) -> str:
    address: str = new_mailbox()
    stack.append_many(address, "INBOX", [message(n, lines=60) for n in range(2)])
    return address


def _retr(conn: poplib.POP3_SSL, number: int) -> bytes:
    _, lines, _ = conn.retr(number)
    return b"\r\n".join(lines) + b"\r\n"


def _raw_login(stack: Stack, port: int, address: str) -> RawTls:
    raw = RawTls(stack, port)
    with raw.closed_on_failure():
        assert raw.line().startswith(b"+OK")
        raw.send(b"AUTH XOAUTH2\r\n")
        assert raw.line() == b"+ \r\n"
        raw.send(sasl_ir(stack, address) + b"\r\n")
        assert raw.line().startswith(b"+OK")
    return raw


def test_without_faults_dovecot_answers_through_exchange_greeting_and_capa(stack, faults, mailbox):
    conn = poplib.POP3_SSL("127.0.0.1", faults.pop3_port, context=stack.ssl_context(), timeout=15)
    assert conn.getwelcome().startswith(b"+OK The Microsoft Exchange POP3 service is ready. [")
    assert conn.capa() == {"TOP": [], "UIDL": [], "SASL": ["PLAIN", "XOAUTH2"], "USER": []}
    conn.close()
    conn = pop3_login(stack, faults.pop3_port, mailbox)
    expected = list(stack.server_messages(mailbox, "INBOX").values())
    assert [_retr(conn, n) for n in (1, 2)] == expected
    conn.quit()
    faults.wait_until_closed(mailbox, "pop3")
    assert faults.connections(mailbox, "pop3").total == 1
    assert faults.commands(mailbox, "pop3")["RETR"] == 2


def test_throttled_auth_gets_an_err_with_the_suggested_backoff(stack, faults, mailbox):
    faults.throttle(mailbox, backoff_ms=60000, protocol="pop3")
    with RawTls(stack, faults.pop3_port) as raw:
        raw.line()
        raw.send(b"AUTH XOAUTH2\r\n")
        assert raw.line() == b"+ \r\n"
        raw.send(sasl_ir(stack, mailbox) + b"\r\n")
        assert raw.line() == THROTTLED
    pop3_login(stack, faults.pop3_port, mailbox).quit()


def test_canned_err_answers(stack, faults, mailbox):
    faults.auth_failed(mailbox, protocol="pop3")
    with pytest.raises(poplib.error_proto, match="Authentication failure: unknown user name or bad password"):
        pop3_login(stack, faults.pop3_port, mailbox)
    faults.argument_error(mailbox, on="RETR", protocol="pop3")
    conn = pop3_login(stack, faults.pop3_port, mailbox)
    with pytest.raises(poplib.error_proto, match=re.escape("Command Argument Error. 11")):
        conn.retr(1)
    assert _retr(conn, 1) == stack.server_messages(mailbox, "INBOX")[1]
    conn.quit()


def test_close_after_n_bytes_of_a_message_cuts_it(stack, faults, mailbox):
    fault_id = faults.bye(mailbox, at_byte=700, on="RETR", in_literal=True, protocol="pop3")
    with _raw_login(stack, faults.pop3_port, mailbox) as raw:
        raw.send(b"RETR 1\r\n")
        assert raw.line().startswith(b"+OK")
        body = raw.rest()
    assert len(body) == 700
    assert stack.server_messages(mailbox, "INBOX")[1].startswith(body)
    assert faults.wait_for_event(fault_id)[0].protocol == "pop3"


def test_close_after_n_commands(stack, faults, mailbox):
    faults.bye(mailbox, after_commands=1, protocol="pop3")
    conn = pop3_login(stack, faults.pop3_port, mailbox)
    conn.stat()
    with pytest.raises((poplib.error_proto, OSError)):
        conn.retr(1)
    conn.close()


def test_reset_in_a_message_is_an_rst(stack, faults, mailbox):
    faults.reset(mailbox, at_byte=100, on="RETR", in_literal=True, protocol="pop3")
    with _raw_login(stack, faults.pop3_port, mailbox) as raw:
        raw.send(b"RETR 2\r\n")
        assert raw.ends_with_reset()


def test_a_stall_delays_retr(stack, faults, mailbox):
    faults.stall(mailbox, duration=2, on="RETR", protocol="pop3")
    conn = pop3_login(stack, faults.pop3_port, mailbox)
    started = time.monotonic()
    assert _retr(conn, 1) == stack.server_messages(mailbox, "INBOX")[1]
    assert time.monotonic() - started >= 1.9
    conn.quit()


def test_imap_faults_leave_pop3_alone(stack, faults, mailbox):
    faults.throttle(mailbox, times=3)  # IMAP
    pop3_login(stack, faults.pop3_port, mailbox).quit()
    assert faults.events() == []
