"""IMAP as the front reads and rewrites it: command lines, literals, SASL initial responses,
and the server lines where Exchange differs from Dovecot (greeting, capabilities, sizes)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

CRLF = b"\r\n"
# Exchange's capabilities (EXCHANGE-ONLINE-FACTS): no CONDSTORE, QRESYNC or ESEARCH;
# MOVE only once logged in.
PRE_LOGIN_CAPABILITIES = ("IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS ID UNSELECT CHILDREN "
                          "IDLE NAMESPACE LITERAL+")
POST_LOGIN_WITHOUT_MOVE = PRE_LOGIN_CAPABILITIES
POST_LOGIN_CAPABILITIES = PRE_LOGIN_CAPABILITIES.replace("UIDPLUS", "UIDPLUS MOVE")
# The greeting names the serving host in base64 of UTF-16LE, as Exchange's does.
GREETING = (b"* OK The Microsoft Exchange IMAP4 service is ready. ["
            + base64.b64encode("LO2P265CA0001.GBRP265.PROD.OUTLOOK.COM".encode("utf-16-le"))
            + b"]" + CRLF)
THROTTLED = "Request is throttled. Suggested Backoff Time: {ms} milliseconds"
NOT_CONNECTED = "User is authenticated but not connected."
AUTH_FAILED = "AUTHENTICATE failed."
ARGUMENT_ERROR = "Command Argument Error. 11"
UNKNOWN_COMMAND = "Command Error. 12"

_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r\n\Z")
_CAPABILITY_CODE = re.compile(rb"\[CAPABILITY [^\]]*\]")
_SIZE = re.compile(rb"(RFC822\.SIZE )(\d+)", re.IGNORECASE)
_FETCH_START = re.compile(rb"\* \d+ FETCH ", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    """The start of a client command: its tag, its verb (``FETCH`` for ``UID FETCH``)."""

    tag: str
    verb: str
    uid: bool
    args: tuple[str, ...]


def parse_command(line: bytes) -> Command | None:
    """The tag and verb of a command line; None for a line that is not a command."""
    words = line.rstrip(b"\r\n").decode("latin-1").split(" ")
    if len(words) < 2 or not words[0] or words[0] in ("*", "+"):
        return None
    tag, verb, args = words[0], words[1].upper(), tuple(words[2:])
    uid = verb == "UID" and bool(args)
    if uid:
        verb, args = args[0].upper(), args[1:]
    return Command(tag, verb, uid, args)


def literal_at_end(line: bytes) -> tuple[int, bool] | None:
    """``(size, synchronizing)`` when ``line`` announces a literal ``{n}`` or ``{n+}``."""
    match = _LITERAL.search(line)
    if match is None:
        return None
    return int(match.group(1)), match.group(2) != b"+"


def sasl_user(mechanism: str, initial_response: bytes | str) -> str | None:
    """The login name inside a base64 XOAUTH2 or OAUTHBEARER initial response."""
    try:
        decoded = base64.b64decode(initial_response, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    mechanism = mechanism.upper()
    if mechanism == "XOAUTH2":
        for part in decoded.split("\x01"):
            if part.startswith("user="):
                return part[len("user="):] or None
    if mechanism == "OAUTHBEARER":
        header = decoded.split("\x01", 1)[0]
        for part in header.split(","):
            if part.startswith("a="):
                return part[2:] or None
    return None


def capabilities(*, logged_in: bool, move: bool = True) -> str:
    if not logged_in:
        return PRE_LOGIN_CAPABILITIES
    return POST_LOGIN_CAPABILITIES if move else POST_LOGIN_WITHOUT_MOVE


def rewrite_capabilities(line: bytes, listing: str) -> bytes:
    """Replace a ``* CAPABILITY`` line or ``[CAPABILITY …]`` code with ``listing``."""
    if line[:13].upper() == b"* CAPABILITY ":
        return b"* CAPABILITY " + listing.encode() + CRLF
    if b"[CAPABILITY " in line.upper():
        return _CAPABILITY_CODE.sub(lambda _: b"[CAPABILITY " + listing.encode() + b"]", line)
    return line


def starts_fetch(line: bytes) -> bool:
    return _FETCH_START.match(line) is not None


def rewrite_sizes(line: bytes, factor: float) -> bytes:
    """Scale every ``RFC822.SIZE n`` in a FETCH response line (Exchange's is an estimate)."""
    return _SIZE.sub(lambda m: m.group(1) + str(max(0, round(int(m.group(2)) * factor))).encode(), line)


def response_tag(line: bytes) -> str | None:
    """The tag of a tagged response line; None for untagged (``*``) and continuation (``+``)."""
    first = line.split(b" ", 1)[0].rstrip(b"\r\n")
    if not first or first in (b"*", b"+"):
        return None
    return first.decode("latin-1")


def response_status(line: bytes) -> str:
    words = line.split(b" ", 2)
    return words[1].rstrip(b"\r\n").upper().decode("latin-1") if len(words) > 1 else ""
