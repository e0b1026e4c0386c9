"""The one place POP3 failures get their kind: poplib, ssl and socket errors, and the
server's own words, in; the project's errors, each with a ``kind``, out."""

from __future__ import annotations

from shared.adapters.mail_failures import connect_failure, dropped, login_refused, throttle_notice, throttled
from shared.diagnoses import hint
from shared.errors import AuthenticationError, FailureKind, MailferryError, MailServerError

AUTH = "AUTH XOAUTH2"  # the mechanism offered; a refusal means the server does not take it
LOGIN = "login"  # the XOAUTH2 string sent; a refusal means the token or the mailbox
_POPLIB_EOF = "-ERR EOF"  # how poplib says the server closed the connection


class ServerClosedConnection(ConnectionError):
    """The server closed the connection in the middle of an answer."""


def pop3_failure(error: BaseException, *, doing: str, server: str,
                 mailbox: str | None = None) -> MailferryError:
    """The one translation of poplib, ssl and socket errors into failure kinds.

    ``doing`` is "connect", AUTH, LOGIN or the command that failed.
    """
    if doing == "connect" and isinstance(error, OSError):
        return connect_failure(error, protocol="POP3", where=server)
    words = server_text(error)
    subject = f"{mailbox}: POP3 server {server}" if mailbox else f"POP3 server {server}"
    notice = throttle_notice(words)
    if notice is not None:
        return throttled(subject, doing, notice, words)
    if isinstance(error, OSError) or words == _POPLIB_EOF:
        return dropped(subject, doing, error, words)
    if doing == AUTH:
        return AuthenticationError(
            f"POP3 server {server} does not accept AUTH XOAUTH2 ({words}). "
            f"{hint(FailureKind.NO_XOAUTH2)}", kind=FailureKind.NO_XOAUTH2)
    if doing == LOGIN and mailbox is not None:
        return login_refused(mailbox, words, protocol="POP3")
    return MailServerError(f"{mailbox or subject}: {doing} failed: {words}")


def server_text(error: BaseException | bytes) -> str:
    """The server's answer in a poplib error (its first argument, bytes or text)."""
    if isinstance(error, OSError):
        return (str(error) or type(error).__name__)[:300]
    value = error.args[0] if isinstance(error, BaseException) and error.args else error
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.strip()[:300]
