"""A dropped connection or throttling during login is told apart from a refused token, over
real TLS sockets: a scripted server closes the connection or answers as Exchange throttles."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devstack.stack import Stack
from shared.adapters.imap import ImapServer
from shared.adapters.pop3 import Pop3MailServer
from shared.errors import AuthenticationError, FailureKind, MailboxThrottled, MailferryError, MailServerError
from shared.model import Secret
from tests.integration.helpers import poll
from tests.integration.scripted_server import (
    THROTTLED,
    Connection,
    ScriptedServer,
    imap_script,
    pop3_script,
)

pytestmark = pytest.mark.usefixtures("identity_endpoint")

ADDRESS = "ops@contoso.com"


def imap_login(stack: Stack, port: int) -> MailferryError:
    """Log in to the scripted IMAP server as the poller does; the error it raised."""
    server = ImapServer("127.0.0.1", port, ca_bundle=stack.ca_bundle, timeout=10)
    with pytest.raises(MailferryError) as caught, server.open(ADDRESS, Secret("not-a-token")):
        pass
    return caught.value


def pop3_login(stack: Stack, port: int) -> MailferryError:
    server = Pop3MailServer("127.0.0.1", port, ca_bundle=stack.ca_bundle, timeout=10)
    with pytest.raises(MailferryError) as caught, server.open(ADDRESS, Secret("not-a-token")):
        pass
    return caught.value


def close_at_once(client: Connection, tag: bytes) -> None:
    """The connection ends as soon as AUTHENTICATE arrives."""


def close_after_the_token(client: Connection, tag: bytes) -> None:
    client.send(b"+ \r\n")
    client.read_line()


def bye_throttled(client: Connection, tag: bytes) -> None:
    """Exchange's untagged BYE, then the socket closes before any tagged answer."""
    client.send(b"* BYE " + THROTTLED + b"\r\n")


def tagged(status: bytes) -> Callable[[Connection, bytes], None]:
    def answer(client: Connection, tag: bytes) -> None:
        client.send(b"+ \r\n")
        client.read_line()
        client.send(tag + b" " + status + b" Request is throttled. Suggested Backoff Time: 89117 "
                    b"milliseconds\r\n* BYE Connection closed. 14\r\n")
    return answer


@pytest.mark.parametrize("script", [close_at_once, close_after_the_token])
def test_imap_connection_closed_during_authenticate_is_a_drop_not_a_refusal(stack, script):
    with ScriptedServer(stack.certs, imap_script(script)) as server:
        error = imap_login(stack, server.port)
    assert server.connections == 1
    assert type(error) is MailServerError and error.kind is FailureKind.CONNECTION_DROPPED
    assert "AUTHENTICATE" in str(error) and "EOF" in str(error)
    assert "refused" not in str(error) and "New-ServicePrincipal" not in str(error)


@pytest.mark.parametrize(("script", "words", "seconds"), [
    (bye_throttled, "BYE " + THROTTLED.decode(), 299.961),
    (tagged(b"BAD"), "BAD Request is throttled. Suggested Backoff Time: 89117 milliseconds", 89.117),
    (tagged(b"NO"), "Request is throttled. Suggested Backoff Time: 89117 milliseconds", 89.117),
])
def test_imap_throttling_during_authenticate_keeps_the_servers_words_and_wait(stack, script, words,
                                                                             seconds):
    with ScriptedServer(stack.certs, imap_script(script)) as server:
        error = imap_login(stack, server.port)
    assert isinstance(error, MailboxThrottled) and error.kind is FailureKind.THROTTLED
    assert error.retry_after_seconds == seconds
    assert words in str(error)
    assert not isinstance(error, AuthenticationError)


def test_a_server_without_xoauth2_is_named_before_any_token_is_sent(stack):
    with ScriptedServer(stack.certs, imap_script(close_at_once, capabilities=b"IMAP4rev1 AUTH=PLAIN")) \
            as server:
        error = imap_login(stack, server.port)
    assert isinstance(error, AuthenticationError) and error.kind is FailureKind.NO_XOAUTH2
    assert "offers: AUTH=PLAIN" in str(error) and "IMAP_HOST" in str(error)


def pop3_close(client: Connection) -> None:
    """The connection ends as soon as AUTH XOAUTH2 arrives."""


def pop3_close_after_the_token(client: Connection) -> None:
    client.send(b"+ \r\n")
    client.read_line()


def pop3_throttled(client: Connection) -> None:
    client.send(b"-ERR Request is throttled. Suggested Backoff Time: 1500 milliseconds\r\n")


def pop3_throttled_after_the_token(client: Connection) -> None:
    client.send(b"+ \r\n")
    client.read_line()
    client.send(b"-ERR " + THROTTLED + b"\r\n")


@pytest.mark.parametrize(("script", "kind", "seconds"), [
    (pop3_close, FailureKind.CONNECTION_DROPPED, None),
    (pop3_close_after_the_token, FailureKind.CONNECTION_DROPPED, None),
    (pop3_throttled, FailureKind.THROTTLED, 1.5),
    (pop3_throttled_after_the_token, FailureKind.THROTTLED, 299.961),
])
def test_pop3_drop_and_throttling_during_login_are_not_refusals(stack, script, kind, seconds):
    with ScriptedServer(stack.certs, pop3_script(script)) as server:
        error = pop3_login(stack, server.port)
    assert error.kind is kind, str(error)
    assert not isinstance(error, AuthenticationError)
    assert getattr(error, "retry_after_seconds", None) == seconds


def test_a_throttled_mailbox_fails_its_poll_with_the_servers_words(stack):
    with ScriptedServer(stack.certs, imap_script(bye_throttled)) as server:
        env = stack.settings_env(ADDRESS) | {"IMAP_PORT": str(server.port)}
        report = poll(env)
    [result] = report.mailboxes
    assert result.error_type == "MailboxThrottled"
    assert THROTTLED.decode() in (result.error or "")
