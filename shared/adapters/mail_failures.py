"""What IMAP and POP3 failures have in common: connecting, TLS, throttling, a dropped session.

Each protocol's adapter maps its library's errors in one function (``imap_failure``,
``pop3_failure``) and goes through here for the parts both protocols share, so a
refused connection or a throttled mailbox gets the same kind and wording over either.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

from shared.adapters.mail_socket import ServerTooSlow
from shared.diagnoses import Ids, hint
from shared.errors import (
    AuthenticationError,
    FailureKind,
    MailboxAccessError,
    MailboxThrottled,
    MailServerError,
)

# Exchange: "Request is throttled. Suggested Backoff Time: 299961 milliseconds", tagged NO or
# BAD, or untagged BYE, on any command. Twelve digits at most: a longer number is no usable
# wait (and int() refuses strings past a few thousand digits).
_THROTTLED = re.compile(rb"\bthrottled\b", re.IGNORECASE)
_BACKOFF = re.compile(rb"suggested\s+back-?off\s+time\s*:\s*(\d{1,12})\s*(?:milliseconds?|ms)\b",
                      re.IGNORECASE)


@dataclass(frozen=True)
class ThrottleNotice:
    """A server's "you are throttled"; ``retry_after_seconds`` is its suggested back-off."""

    retry_after_seconds: float | None


def throttle_notice(response: bytes | str) -> ThrottleNotice | None:
    """The throttling notice in a server response (any status, any command), or None."""
    data = response.encode("utf-8", "surrogateescape") if isinstance(response, str) else response
    backoff = _BACKOFF.search(data)
    if backoff is None and _THROTTLED.search(data) is None:
        return None
    return ThrottleNotice(int(backoff.group(1)) / 1000 if backoff else None)


def connect_failure_kind(error: OSError, *, handshake: bool = False) -> FailureKind:
    """The kind of a failure to reach a server; ``handshake`` when TCP had already connected."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return FailureKind.TLS_UNTRUSTED
    if isinstance(error, ssl.SSLError):
        return FailureKind.TLS_PROTOCOL
    if isinstance(error, TimeoutError):
        return FailureKind.CONNECT_TIMEOUT
    return FailureKind.TLS_PROTOCOL if handshake else FailureKind.CONNECT_FAILED


def connect_failure(error: OSError, *, protocol: str, where: str) -> MailServerError:
    """The error for a server that could not be reached or would not speak TLS."""
    kind = connect_failure_kind(error)
    if kind is FailureKind.TLS_UNTRUSTED:
        reason = getattr(error, "verify_message", None) or error
        text = f"TLS to {where} failed: the server's certificate is not trusted ({reason})."
    elif kind is FailureKind.TLS_PROTOCOL:
        text = f"TLS to {where} failed ({getattr(error, 'reason', None) or error})."
    elif kind is FailureKind.CONNECT_TIMEOUT:
        text = f"Timed out connecting to {protocol} server {where}."
    else:
        text = f"Could not connect to {protocol} server {where}: {error.strerror or error}."
    return MailServerError(f"{text} {hint(kind)}", kind=kind)


def throttled(subject: str, doing: str, notice: ThrottleNotice, words: str) -> MailboxThrottled:
    """The error for a throttled mailbox, keeping the server's words and its suggested wait."""
    seconds = notice.retry_after_seconds
    wait = (f"it suggests waiting {seconds:g} s" if seconds is not None
            else "it did not say for how long")
    return MailboxThrottled(f"{subject} is throttling the mailbox, answering {doing} with "
                            f"'{words}'; {wait}.", retry_after_seconds=seconds)


def dropped(subject: str, doing: str, error: BaseException, words: str) -> MailServerError:
    """The error for a session that ended in the middle of ``doing``."""
    if isinstance(error, TimeoutError):
        why = str(error) if isinstance(error, ServerTooSlow) else ""
        text = f"{subject}: timed out during {doing}{f' ({why})' if why else ''}."
    else:
        text = f"{subject}: the connection was lost during {doing} ({words or type(error).__name__})."
    return MailServerError(text, kind=FailureKind.CONNECTION_DROPPED)


def login_refused(mailbox: str, words: str, *, protocol: str) -> AuthenticationError:
    """The server refused the login: this mailbox is not granted, or the token itself."""
    ids = Ids(mailbox=mailbox)
    if "not connected" in words.lower():
        return MailboxAccessError(f"{mailbox}: {words} {hint(FailureKind.NOT_CONNECTED, ids)}")
    return AuthenticationError(
        f"{mailbox}: the {protocol} server refused the app's token ({words}). "
        f"{hint(FailureKind.AUTH_REFUSED, ids)}", kind=FailureKind.AUTH_REFUSED)
