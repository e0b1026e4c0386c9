"""Blob names, blob metadata and duplicate keys, derived from a message and where it came from.

A blob name is ``<mailbox>/<folder>/<uidvalidity>/<uid>.eml``. Mailbox and folder become one
path segment each: every character outside a small safe set is percent-encoded (UTF-8), so
``/``, ``..``, non-ASCII and control characters can never leave their prefix, and the
mapping stays reversible with ``urllib.parse.unquote``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from urllib.parse import quote

from shared.model import FetchedMessage, MessageInfo

_SAFE_SEGMENT = "@+-_"
_METADATA_LIMIT = 1024


def path_segment(text: str) -> str:
    """One safe blob path segment for a mailbox or folder name."""
    encoded = quote(text, safe=_SAFE_SEGMENT + ".")
    if encoded.startswith("."):
        # '.', '..' and hidden-looking names must not read as relative paths.
        encoded = "%2E" + encoded[1:]
    return encoded or "%00"


def folder_prefix(mailbox: str, folder: str) -> str:
    """Prefix of every blob from one folder, across UIDVALIDITY values."""
    return f"{path_segment(mailbox.lower())}/{path_segment(folder)}/"


def blob_name(mailbox: str, folder: str, uidvalidity: int, uid: int) -> str:
    """The deterministic name of one message's blob: a rerun writes the same name."""
    return f"{folder_prefix(mailbox, folder)}{uidvalidity}/{uid:010d}.eml"


def uidvalidity_of(name: str, prefix: str) -> int | None:
    """The UIDVALIDITY segment of a blob name under ``prefix``, if it has one."""
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    head, _, _ = rest.partition("/")
    return int(head) if head.isdigit() else None


_WANTED = ("message-id", "date", "from", "to", "subject")


def header_block(raw: bytes) -> bytes:
    """The message's header section: everything before the first empty line."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return raw[:min(ends) + 2] if ends else raw


def _headers(raw: bytes) -> dict[str, str]:
    """The few headers naming needs, parsed once from the header section alone
    (parsing a whole 200 KB message for five headers costs more than uploading it)."""
    found: dict[str, str] = {}
    for name, value in BytesHeaderParser(policy=compat32).parsebytes(header_block(raw)).raw_items():
        key = name.lower()
        if key in _WANTED and key not in found:
            # Raw 8-bit header bytes arrive as surrogates; read them as the UTF-8 they
            # usually are. Encoded words (RFC 2047) stay as they are: stable either way.
            text = value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
            found[key] = " ".join(text.split())
    return found


def message_id(raw: bytes) -> str:
    """The Message-ID header, whitespace folded; empty when there is none."""
    return _headers(raw).get("message-id", "")


def dedup_key(raw: bytes, internal_date: datetime | None) -> str:
    """Identifies a message across a UIDVALIDITY change.

    Exchange may rebuild MIME between fetches, so this is built from headers, never from
    the bytes: the Message-ID, or when there is none Date, From, To, Subject and the
    server's internal date.
    """
    return _dedup_key(_headers(raw), internal_date)


def _dedup_key(headers: dict[str, str], internal_date: datetime | None) -> str:
    mid = headers.get("message-id", "")
    if mid:
        return "mid-" + hashlib.sha256(mid.encode()).hexdigest()
    parts = [headers.get(h, "") for h in ("date", "from", "to", "subject")]
    parts.append(internal_date.isoformat() if internal_date else "")
    return "hdr-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def metadata_value(text: str) -> str:
    """Text made safe for a blob metadata value (printable ASCII, bounded length)."""
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[]^_`{|}~")[:_METADATA_LIMIT]


def blob_metadata(
    mailbox: str, folder: str, uidvalidity: int, message: FetchedMessage
) -> dict[str, str]:
    """Metadata stored with each blob, for downstream consumers and for resyncs."""
    headers = _headers(message.raw)
    return {
        "mailbox": metadata_value(mailbox),
        "folder": metadata_value(folder),
        "uidvalidity": str(uidvalidity),
        "uid": str(message.uid),
        "internal_date": message.internal_date.isoformat() if message.internal_date else "",
        "message_id": metadata_value(headers.get("message-id", "")),
        "size": str(len(message.raw)),
        "dedup_key": _dedup_key(headers, message.internal_date),
    }


def pop3_blob_name(mailbox: str, uidl: str) -> str:
    """The deterministic name of a POP3 message's blob, from its unique id (UIDL).

    The ``pop3`` segment keeps these apart from IMAP blobs of the same Inbox, whose third
    segment is a UIDVALIDITY number.
    """
    return f"{path_segment(mailbox.lower())}/INBOX/pop3/{path_segment(uidl)}.eml"


def pop3_blob_metadata(mailbox: str, uidl: str, raw: bytes) -> dict[str, str]:
    """Metadata stored with each POP3 blob; like ``blob_metadata`` with the UIDL as the id."""
    headers = _headers(raw)
    return {
        "mailbox": metadata_value(mailbox),
        "folder": "INBOX",
        "uidl": metadata_value(uidl),
        "message_id": metadata_value(headers.get("message-id", "")),
        "size": str(len(raw)),
        "dedup_key": _dedup_key(headers, None),
    }


def metadata_for_head(mailbox: str, folder: str, uidvalidity: int, info: MessageInfo,
                      head: bytes, size: int) -> dict[str, str]:
    """Metadata of a streamed message, from its first bytes (the headers) and its size."""
    metadata = blob_metadata(mailbox, folder, uidvalidity,
                             FetchedMessage(info.uid, head, info.internal_date))
    metadata["size"] = str(size)
    return metadata
