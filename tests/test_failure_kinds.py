"""Library errors and server text in, failure kinds out: the one mapping per protocol.

The exceptions are built the way the libraries build them (imaplib wraps an abort in
"command: X => …", IMAPClient re-raises everything from AUTHENTICATE as LoginError, poplib
raises error_proto with the server's line as bytes), so the mapping is tested without a socket.
"""

from __future__ import annotations

import poplib
import socket
import ssl

import pytest
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from shared.adapters.imap_failures import AUTHENTICATE, imap_failure, no_xoauth2
from shared.adapters.mail_failures import connect_failure_kind
from shared.adapters.pop3_failures import AUTH, LOGIN, ServerClosedConnection, pop3_failure
from shared.errors import FailureKind, MailboxThrottled, MailferryError

K = FailureKind
THROTTLE_299 = b"Request is throttled. Suggested Backoff Time: 299961 milliseconds"


def login_error(inner: BaseException) -> LoginError:
    """What IMAPClient.sasl_login raises: a LoginError whose context is imaplib's error."""
    try:
        try:
            raise inner
        except (IMAPClientError, OSError) as e:
            raise LoginError(str(e))  # noqa: B904 - IMAPClient raises it this way
    except LoginError as outer:
        return outer


def cert_error() -> ssl.SSLCertVerificationError:
    return ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")


CONNECT_ERRORS = [
    (ConnectionRefusedError(111, "Connection refused"), False, K.CONNECT_FAILED),
    (socket.gaierror(-2, "Name or service not known"), False, K.CONNECT_FAILED),
    (OSError(101, "Network is unreachable"), False, K.CONNECT_FAILED),
    (TimeoutError("timed out"), False, K.CONNECT_TIMEOUT),
    (TimeoutError("_ssl.c:990: The handshake operation timed out"), True, K.CONNECT_TIMEOUT),
    (cert_error(), False, K.TLS_UNTRUSTED),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), False, K.TLS_PROTOCOL),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), False, K.TLS_PROTOCOL),
    (ConnectionResetError(104, "Connection reset by peer"), True, K.TLS_PROTOCOL),
    (ConnectionResetError(104, "Connection reset by peer"), False, K.CONNECT_FAILED),
]


@pytest.mark.parametrize(("error", "handshake", "kind"), CONNECT_ERRORS)
def test_connect_errors_are_shared_by_both_protocols(error: OSError, handshake: bool, kind: FailureKind):
    assert connect_failure_kind(error, handshake=handshake) is kind
    if not handshake:
        for mapped in (imap_failure(error, doing="connect", server="mail.example:993"),
                       pop3_failure(error, doing="connect", server="mail.example:995")):
            assert mapped.kind is kind
            assert "mail.example" in str(mapped)


IMAP_CASES = [
    # (what the library raised, the command, the last untagged BYE, kind, suggested wait)
    (login_error(IMAPClientAbortError("socket error: EOF")), AUTHENTICATE, None,
     K.CONNECTION_DROPPED, None),
    (login_error(IMAPClientAbortError("socket error: EOF")), AUTHENTICATE, THROTTLE_299,
     K.THROTTLED, 299.961),
    (login_error(IMAPClientAbortError(f"command: AUTHENTICATE => {THROTTLE_299.decode()}")),
     AUTHENTICATE, THROTTLE_299, K.THROTTLED, 299.961),
    (login_error(IMAPClientError("AUTHENTICATE command error: BAD [b'Request is throttled. "
                                 "Suggested Backoff Time: 89117 milliseconds']")),
     AUTHENTICATE, None, K.THROTTLED, 89.117),
    (login_error(IMAPClientError(THROTTLE_299.decode())), AUTHENTICATE, None, K.THROTTLED, 299.961),
    (login_error(IMAPClientAbortError("command: AUTHENTICATE => Connection closed. 14")),
     AUTHENTICATE, b"Connection closed. 14", K.CONNECTION_DROPPED, None),
    (ConnectionResetError(104, "Connection reset by peer"), AUTHENTICATE, None,
     K.CONNECTION_DROPPED, None),
    (TimeoutError("timed out"), AUTHENTICATE, None, K.CONNECTION_DROPPED, None),
    (login_error(IMAPClientError("[AUTHENTICATIONFAILED] AUTHENTICATE failed.")), AUTHENTICATE, None,
     K.AUTH_REFUSED, None),
    (login_error(IMAPClientError("AUTHENTICATE command error: BAD [b'User is authenticated but not "
                                 "connected.']")), AUTHENTICATE, None, K.NOT_CONNECTED, None),
    (IMAPClientError("b'* BYE Request is throttled. Suggested Backoff Time: 1500 milliseconds'"),
     "connect", None, K.THROTTLED, 1.5),
    (IMAPClientAbortError("socket error: EOF"), "connect", None, K.CONNECTION_DROPPED, None),
    (IMAPClientError("b'* BYE Server shutting down'"), "connect", None, K.SERVER_ERROR, None),
    (IMAPClientAbortError("socket error: EOF"), "CAPABILITY", None, K.CONNECTION_DROPPED, None),
    (IMAPClientError("select failed: Mailbox doesn't exist: Nope"), "EXAMINE Nope", None,
     K.FOLDER_MISSING, None),
    (IMAPClientError("select failed: [NONEXISTENT] Unknown Mailbox: Nope"), "EXAMINE Nope", None,
     K.FOLDER_MISSING, None),
    (IMAPClientError("select failed: Request is throttled. Suggested Backoff Time: 60000 "
                     "milliseconds"), "EXAMINE INBOX", None, K.THROTTLED, 60.0),
    (IMAPClientError("fetch failed: Command Argument Error. 11"), "UID FETCH", None,
     K.SERVER_ERROR, None),
    (IMAPClientAbortError("command: UID => socket error: EOF"), "UID FETCH", None,
     K.CONNECTION_DROPPED, None),
    (IMAPClientAbortError("command: UID => socket error: EOF"), "UID FETCH", THROTTLE_299,
     K.THROTTLED, 299.961),
    (TimeoutError("The read operation timed out"), "UID SEARCH", None, K.CONNECTION_DROPPED, None),
    (ConnectionResetError(104, "Connection reset by peer"), "LIST", None, K.CONNECTION_DROPPED, None),
]


@pytest.mark.parametrize(("error", "doing", "bye", "kind", "wait"), IMAP_CASES)
def test_imap_errors_map_to_kinds(error: BaseException, doing: str, bye: bytes | None,
                                  kind: FailureKind, wait: float | None):
    mapped = imap_failure(error, doing=doing, server="outlook.example", mailbox="ops@contoso.com",
                          bye=bye)
    assert mapped.kind is kind, str(mapped)
    assert isinstance(mapped, MailboxThrottled) is (kind is K.THROTTLED)
    if isinstance(mapped, MailboxThrottled):
        assert mapped.retry_after_seconds == wait
        assert "Suggested Backoff Time" in str(mapped)  # the server's own words


def test_imap_words_are_kept_and_a_drop_is_not_called_a_refusal():
    dropped = imap_failure(login_error(IMAPClientAbortError("socket error: EOF")), doing=AUTHENTICATE,
                           server="outlook.example", mailbox="ops@contoso.com")
    assert "AUTHENTICATE" in str(dropped) and "socket error: EOF" in str(dropped)
    assert "refused" not in str(dropped) and "New-ServicePrincipal" not in str(dropped)

    throttled = imap_failure(login_error(IMAPClientAbortError("socket error: EOF")), doing=AUTHENTICATE,
                             server="outlook.example", mailbox="ops@contoso.com", bye=THROTTLE_299)
    assert f"BYE {THROTTLE_299.decode()}" in str(throttled)
    assert "waiting 299.961 s" in str(throttled)

    refused = imap_failure(login_error(IMAPClientError("[AUTHENTICATIONFAILED] AUTHENTICATE failed.")),
                           doing=AUTHENTICATE, server="outlook.example", mailbox="ops@contoso.com")
    assert "[AUTHENTICATIONFAILED] AUTHENTICATE failed." in str(refused)
    assert "Add-MailboxPermission -Identity ops@contoso.com" in str(refused)

    tagged = imap_failure(login_error(IMAPClientError(
        "AUTHENTICATE command error: BAD [b'User is authenticated but not connected.']")),
        doing=AUTHENTICATE, server="outlook.example", mailbox="ops@contoso.com")
    assert "BAD User is authenticated but not connected." in str(tagged)


POP3_CASES = [
    (poplib.error_proto(b"-ERR Request is throttled. Suggested Backoff Time: 1500 milliseconds"),
     "connect", K.THROTTLED, 1.5),
    (poplib.error_proto("-ERR EOF"), "connect", K.CONNECTION_DROPPED, None),
    (poplib.error_proto(b"-ERR Server unavailable. 21"), "connect", K.SERVER_ERROR, None),
    (poplib.error_proto(b"-ERR Unrecognized authentication type"), AUTH, K.NO_XOAUTH2, None),
    (poplib.error_proto(b"+OK"), AUTH, K.NO_XOAUTH2, None),
    (poplib.error_proto(b"-ERR Request is throttled. Suggested Backoff Time: 299961 milliseconds"),
     AUTH, K.THROTTLED, 299.961),
    (ServerClosedConnection("the server closed the connection"), AUTH, K.CONNECTION_DROPPED, None),
    (ServerClosedConnection("the server closed the connection"), LOGIN, K.CONNECTION_DROPPED, None),
    (ConnectionResetError(104, "Connection reset by peer"), LOGIN, K.CONNECTION_DROPPED, None),
    (TimeoutError("timed out"), LOGIN, K.CONNECTION_DROPPED, None),
    (poplib.error_proto(b"-ERR Authentication failure: unknown user name or bad password."), LOGIN,
     K.AUTH_REFUSED, None),
    (poplib.error_proto(b"-ERR [AUTH] Authentication failed."), LOGIN, K.AUTH_REFUSED, None),
    (poplib.error_proto(b"-ERR User is authenticated but not connected."), LOGIN, K.NOT_CONNECTED,
     None),
    (poplib.error_proto(b"-ERR Request is throttled. Suggested Backoff Time: 89117 milliseconds"),
     LOGIN, K.THROTTLED, 89.117),
    (poplib.error_proto(b"-ERR Request is throttled."), "UIDL", K.THROTTLED, None),
    (poplib.error_proto(b"-ERR no such message"), "RETR 3", K.SERVER_ERROR, None),
    (poplib.error_proto("-ERR EOF"), "UIDL", K.CONNECTION_DROPPED, None),
    (ServerClosedConnection("the server closed the connection in the middle of a message"), "RETR 3",
     K.CONNECTION_DROPPED, None),
]


@pytest.mark.parametrize(("error", "doing", "kind", "wait"), POP3_CASES)
def test_pop3_errors_map_to_kinds(error: BaseException, doing: str, kind: FailureKind,
                                  wait: float | None):
    mapped = pop3_failure(error, doing=doing, server="outlook.example", mailbox="ops@contoso.com")
    assert mapped.kind is kind, str(mapped)
    if isinstance(mapped, MailboxThrottled):
        assert mapped.retry_after_seconds == wait
    else:
        assert kind is not K.THROTTLED


def test_pop3_refusal_keeps_the_server_words_and_names_the_pop_setup():
    refused = pop3_failure(poplib.error_proto(b"-ERR Authentication failure: unknown user name or bad "
                                              b"password."), doing=LOGIN, server="outlook.example",
                           mailbox="ops@contoso.com")
    for words in ("-ERR Authentication failure: unknown user name or bad password.",
                  "POP.AccessAsApp", "-PopEnabled $true", "Add-MailboxPermission"):
        assert words in str(refused), words
    dropped = pop3_failure(ServerClosedConnection("the server closed the connection"), doing=LOGIN,
                           server="outlook.example", mailbox="ops@contoso.com")
    assert "the server closed the connection" in str(dropped) and "refused" not in str(dropped)


@pytest.mark.parametrize(("capabilities", "offered"), [
    (["IMAP4REV1", "AUTH=PLAIN", "AUTH=LOGIN"], "AUTH=PLAIN AUTH=LOGIN"),
    (["IMAP4rev1", "STARTTLS", "LOGINDISABLED"], "none"),
])
def test_a_server_without_xoauth2_says_what_it_offers(capabilities: list[str], offered: str):
    error = no_xoauth2("imap.example", capabilities)
    assert error.kind is K.NO_XOAUTH2 and f"(offers: {offered})" in str(error)


def test_every_mapped_error_is_a_mailferry_error_with_a_kind():
    for error, doing, *_ in IMAP_CASES:
        assert isinstance(imap_failure(error, doing=doing, server="s"), MailferryError)
    for error, doing, *_ in POP3_CASES:
        assert isinstance(pop3_failure(error, doing=doing, server="s"), MailferryError)
