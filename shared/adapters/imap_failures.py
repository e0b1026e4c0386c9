"""The one place IMAP failures get their kind: IMAPClient, imaplib, ssl and socket errors,
and the server's own words, in; the project's errors, each with a ``kind``, out."""

from __future__ import annotations

import re
from typing import Any

from imapclient.exceptions import IMAPClientAbortError

from shared.adapters.mail_failures import connect_failure, dropped, login_refused, throttle_notice, throttled
from shared.diagnoses import hint
from shared.errors import AuthenticationError, FailureKind, MailferryError, MailServerError

AUTHENTICATE = "AUTHENTICATE"
_IMAPLIB_PREFIX = re.compile(r"^command: \S+ => ")  # how imaplib re-raises an abort
_IMAPLIB_STATUS = re.compile(r"^\S+ command error: (BAD|NO) \[b(['\"])(.*)\2\]$")


def imap_failure(error: BaseException, *, doing: str, server: str, mailbox: str | None = None,
                 bye: bytes | None = None) -> MailferryError:
    """The one translation of IMAPClient, imaplib, ssl and socket errors into failure kinds.

    ``doing`` is "connect", AUTHENTICATE or the command that failed; ``bye`` the last
    untagged BYE, which imaplib keeps aside when the socket closes right after it.
    """
    if doing == "connect" and isinstance(error, OSError):
        return connect_failure(error, protocol="IMAP", where=server)
    words = _server_words(error, bye)
    subject = f"{mailbox}: IMAP server {server}" if mailbox else f"IMAP server {server}"
    notice = throttle_notice(words)
    if notice is not None:
        return throttled(subject, doing, notice, words)
    if _dropped(error):
        return dropped(subject, doing, error, words)
    if doing == AUTHENTICATE and mailbox is not None:
        return login_refused(mailbox, words, protocol="IMAP")
    if doing.startswith("EXAMINE") and "exist" in words.lower():
        return MailServerError(
            f"{mailbox or subject}: {doing} failed: the folder does not exist ({words}). "
            f"{hint(FailureKind.FOLDER_MISSING)}", kind=FailureKind.FOLDER_MISSING)
    return MailServerError(f"{mailbox or subject}: {doing} failed: {words}")


def no_xoauth2(server: str, capabilities: list[str]) -> AuthenticationError:
    """The error for a server whose capabilities do not include AUTH=XOAUTH2."""
    offered = " ".join(c for c in capabilities if c.upper().startswith("AUTH=")) or "none"
    return AuthenticationError(f"IMAP server {server} does not offer XOAUTH2 (offers: {offered}). "
                               f"{hint(FailureKind.NO_XOAUTH2)}", kind=FailureKind.NO_XOAUTH2)


def _dropped(error: BaseException) -> bool:
    """An abort or socket error, itself or under IMAPClient's LoginError."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (IMAPClientAbortError, OSError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def last_bye(client: Any) -> bytes | None:
    """The last untagged BYE: imaplib keeps it aside, and only says "EOF" when the socket
    closes before the command's tagged answer (Exchange's "* BYE Request is throttled")."""
    untagged = getattr(getattr(client, "_imap", None), "untagged_responses", None) or {}
    said = untagged.get("BYE")
    return bytes(said[-1]) if said else None


def _server_words(error: BaseException, bye: bytes | None = None) -> str:
    """What the server said, without imaplib's wrapping; an untagged BYE first."""
    text = _IMAPLIB_PREFIX.sub("", str(error).strip())
    status = _IMAPLIB_STATUS.match(text)
    if status:
        text = f"{status.group(1)} {status.group(3)}"
    elif text.startswith(("b'", 'b"')):
        text = text[2:-1]
    if bye is not None:
        said = bye.decode("utf-8", "replace").strip()
        text = f"BYE {said}" if said in text else f"BYE {said}; {text}"
    return text.strip()[:300]
