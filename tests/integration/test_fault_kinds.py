"""Exchange's failures, played by the fault front in front of the real Dovecot, reach the
poller as the right kind: a throttle (with its back-off), a drop and a refusal are told apart
during login and during a poll, over IMAP and POP3."""

from __future__ import annotations

import time

import pytest

from devstack.faults import FaultFront
from devstack.stack import Stack
from shared.adapters.imap import ImapServer
from shared.adapters.pop3 import Pop3MailServer
from shared.errors import AuthenticationError, FailureKind, MailboxThrottled, MailferryError
from shared.model import Secret
from tests.integration.helpers import poll

pytestmark = pytest.mark.usefixtures("identity_endpoint")

ONE = b"From: a@fabrikam.com\r\nSubject: one\r\nMessage-ID: <one@x>\r\n\r\nbody\r\n"


def log_in(stack: Stack, faults: FaultFront, address: str, protocol: str) -> MailferryError:
    """Log in through the front as the poller does; the error it raised."""
    server: ImapServer | Pop3MailServer
    if protocol == "imap":
        server = ImapServer("127.0.0.1", faults.imap_port, ca_bundle=stack.ca_bundle, timeout=10)
    else:
        server = Pop3MailServer("127.0.0.1", faults.pop3_port, ca_bundle=stack.ca_bundle, timeout=10)
    with pytest.raises(MailferryError) as caught, server.open(address, Secret(stack.issue_token())):
        pass
    return caught.value


@pytest.mark.parametrize(("protocol", "status", "bye"), [
    ("imap", "NO", True), ("imap", "BAD", False), ("imap", "BYE", False),
    ("pop3", "-ERR", False),  # POP3 has one way to say it
])
def test_throttled_login_is_throttled_with_its_back_off(stack, faults, new_mailbox, protocol, status, bye):
    address = new_mailbox()
    faults.throttle(address, backoff_ms=89117, status=status, bye=bye, protocol=protocol)
    error = log_in(stack, faults, address, protocol)
    assert isinstance(error, MailboxThrottled) and error.kind is FailureKind.THROTTLED, str(error)
    assert error.retry_after_seconds == 89.117
    assert "Request is throttled. Suggested Backoff Time: 89117 milliseconds" in str(error)
    assert [e.kind for e in faults.events()] == ["answer"]


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
@pytest.mark.parametrize("fault", ["bye", "reset"])
def test_a_connection_ended_during_login_is_a_drop(stack, faults, new_mailbox, protocol, fault):
    address = new_mailbox()
    if fault == "bye":
        faults.bye(address, on="AUTHENTICATE", at_byte=0, protocol=protocol)
    else:
        faults.reset(address, on="AUTHENTICATE", protocol=protocol)
    error = log_in(stack, faults, address, protocol)
    assert error.kind is FailureKind.CONNECTION_DROPPED, str(error)
    assert not isinstance(error, AuthenticationError)
    assert "New-ServicePrincipal" not in str(error)
    if fault == "bye" and protocol == "imap":
        assert "BYE Connection closed. 14" in str(error)  # the server's words, kept


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_refusals_stay_refusals(stack, faults, new_mailbox, protocol):
    address = new_mailbox()
    faults.auth_failed(address, protocol=protocol)
    refused = log_in(stack, faults, address, protocol)
    assert isinstance(refused, AuthenticationError) and refused.kind is FailureKind.AUTH_REFUSED
    assert "Add-MailboxPermission" in str(refused)
    faults.not_connected(address, protocol=protocol)
    not_granted = log_in(stack, faults, address, protocol)
    assert not_granted.kind is FailureKind.NOT_CONNECTED and "not connected" in str(not_granted)


@pytest.mark.parametrize(("command", "status", "bye"), [
    ("EXAMINE", "BAD", True), ("FETCH", "BAD", True), ("SEARCH", "BAD", True), ("SEARCH", "NO", False)])
def test_a_throttle_during_a_poll_fails_the_mailbox_as_throttled_and_loses_nothing(
        stack, faults, new_mailbox, command, status, bye):
    address = new_mailbox()
    stack.append(address, "INBOX", ONE)
    env = faults.settings_env(address, storage=False)
    faults.throttle(address, on=command, status=status, bye=bye, backoff_ms=5000)
    [result] = poll(env).mailboxes
    throttled_at = time.monotonic()
    assert result.error_type == "MailboxThrottled", result.error
    assert "Suggested Backoff Time: 5000 milliseconds" in (result.error or "")
    assert result.folder_errors == []  # the mailbox is throttled, not one folder
    [early] = poll(env).mailboxes  # inside the suggested wait: left alone, no login
    assert (early.skipped or "").startswith("throttled until "), early
    time.sleep(max(0.0, throttled_at + 5.2 - time.monotonic()))
    [again] = poll(env).mailboxes  # the fault was used up and the wait is over: it delivers
    assert again.ok and again.delivered == 1
    assert faults.connections(address).total == 2


@pytest.mark.parametrize(("status", "bye"), [("NO", True), ("BAD", False), ("BYE", False)])
def test_a_throttled_streamed_fetch_is_a_throttle(stack, faults, new_mailbox, status, bye):
    # The large-message FETCH reads its answer itself, not through imaplib: the throttle
    # still reads as one, whether said in the tagged answer or in a BYE.
    address = new_mailbox()
    stack.append(address, "INBOX", ONE)
    server = ImapServer("127.0.0.1", faults.imap_port, ca_bundle=stack.ca_bundle, timeout=10)
    with server.open(address, Secret(stack.issue_token())) as session:
        session.select_folder("INBOX")
        faults.throttle(address, on="FETCH", status=status, bye=bye, backoff_ms=5000)
        with pytest.raises(MailboxThrottled, match="Suggested Backoff Time: 5000 milliseconds"):
            session.fetch_pieces(1, 1024)
