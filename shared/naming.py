"""Blob names and blob metadata, derived from a message and where it came from.

Names. A blob is ``<mailbox>/<folder>/<uidvalidity>/<uid>.eml`` (POP3:
``<mailbox>/INBOX/pop3/<uidl>.eml``). Mailbox (lower-cased) and folder become one path
segment each: every character outside ASCII letters, digits and ``@+-_.~`` is
percent-encoded (UTF-8), and so is a leading or trailing ``.``; ``/``, ``..``, spaces,
non-ASCII and control characters cannot leave their prefix, and ``urllib.parse.unquote``
gives the name back. A segment longer than 255 characters (storage allows 1,024 per blob
name, and 255 per segment with a hierarchical namespace) is cut to 222 characters, never
inside an escape, followed by ``~`` and the first 32 hex digits of the SHA-256 of the
name's UTF-8: still one distinct, stable segment per name; the whole name is in the
metadata.

Metadata. Every value is percent-encoded: each byte outside ASCII letters, digits and
``!#$&'()*+,-./:;<=>?@[]^_`{|}~`` (so space, ``"``, ``%``, ``\\``, control characters and
every non-ASCII byte) becomes ``%XX``. Any value is thus a valid header value with no
whitespace to trim, and ``urllib.parse.unquote`` (not ``unquote_plus``) gives the text
back; ``unquote_to_bytes`` gives ``message_id``'s raw header bytes, which need not be
UTF-8. ``message_id`` is the first Message-ID header unfolded and trimmed, otherwise as
sent. To keep all metadata within storage's 8 KiB, ``mailbox`` keeps at most 1,024
encoded characters, ``folder`` and ``uidl`` 2,048 and ``message_id`` 4,096; a longer value
is cut at a character boundary and ``<name>_truncated`` is ``true``. ``internal_date`` is
ISO 8601 in UTC. ``dedup_key`` is described in ``shared.dedup``.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

from shared.dedup import MessageDigest, internal_date_text
from shared.model import FetchedMessage, MessageInfo

_SAFE_SEGMENT = "@+-_."
SEGMENT_LIMIT = 255
_DIGEST_CHARS = 32
_SAFE_METADATA = "!#$&'()*+,-./:;<=>?@[]^_`{|}~"
# Values made only of what quote leaves as is (its letters, digits and "_.-~", and the above).
_NOTHING_TO_ENCODE = re.compile(rb"[A-Za-z0-9" + re.escape(_SAFE_METADATA.encode()) + rb"]*")
# Encoded characters per value: with the fixed fields and the names, under 8 KiB in all.
_METADATA_LIMITS = {"mailbox": 1024, "folder": 2048, "uidl": 2048, "message_id": 4096}


def _utf8(text: str) -> bytes:
    # Names read from a server with surrogateescape keep their raw bytes.
    return text.encode("utf-8", "surrogateescape")


def within_length(encoded: str, limit: int, name: str) -> str:
    """``encoded`` if it fits in ``limit`` characters; else its start (never cut inside a
    ``%XX`` escape), ``~`` and a digest of ``name``, which keeps it distinct and stable."""
    if len(encoded) <= limit:
        return encoded
    digest = hashlib.sha256(_utf8(name)).hexdigest()[:_DIGEST_CHARS]
    cut = limit - len(digest) - 1
    escape = encoded.rfind("%", cut - 2, cut)
    if escape >= 0:
        cut = escape
    return f"{encoded[:cut]}~{digest}"


def path_segment(text: str) -> str:
    """One safe blob path segment for a mailbox or folder name."""
    encoded = quote(_utf8(text), safe=_SAFE_SEGMENT)
    if encoded.startswith("."):
        # '.', '..' and hidden-looking names must not read as relative paths.
        encoded = "%2E" + encoded[1:]
    if encoded.endswith("."):
        # Storage advises that no path segment end with a dot.
        encoded = encoded[:-1] + "%2E"
    return within_length(encoded or "%00", SEGMENT_LIMIT, text)


def folder_prefix(mailbox: str, folder: str) -> str:
    """Prefix of every blob from one folder, across UIDVALIDITY values."""
    return f"{path_segment(mailbox.lower())}/{path_segment(folder)}/"


def blob_name(mailbox: str, folder: str, uidvalidity: int, uid: int) -> str:
    """The deterministic name of one message's blob: a rerun writes the same name."""
    return f"{folder_prefix(mailbox, folder)}{uidvalidity}/{uid:010d}.eml"


# The UID in a blob name is zero-padded to this many digits (see blob_name), so names sort
# by UID and a range of UIDs shares name prefixes.
UID_DIGITS = 10
_MAX_RANGE_PREFIXES = 10


def uid_range_prefixes(first: int, last: int) -> list[str]:
    """Name prefixes (after ``<uidvalidity>/``) that together cover UIDs ``first`` to ``last``:
    at most ten, the narrowest that do, so listing a range of UIDs reads little beyond it."""
    for width in range(UID_DIGITS, -1, -1):
        step = 10 ** (UID_DIGITS - width)
        low, high = first // step, last // step
        if high - low + 1 <= _MAX_RANGE_PREFIXES:
            return [str(p).zfill(width) if width else "" for p in range(low, high + 1)]
    return [""]


def uidvalidity_of(name: str, prefix: str) -> int | None:
    """The UIDVALIDITY segment of a blob name under ``prefix``, if it has one."""
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    head, _, _ = rest.partition("/")
    return int(head) if head.isdigit() else None


def uid_of(name: str) -> int | None:
    """The UID of an IMAP blob name, if it is one."""
    last = name.rpartition("/")[2]
    stem = last.removesuffix(".eml")
    return int(stem) if stem != last and stem.isdigit() else None


def metadata_value(value: str | bytes, limit: int) -> tuple[str, bool]:
    """``value`` percent-encoded as above, and whether it had to be cut to ``limit``."""
    raw = _utf8(value) if isinstance(value, str) else value
    if len(raw) <= limit and _NOTHING_TO_ENCODE.fullmatch(raw):
        return raw.decode("ascii"), False  # most values: what quote would give, for less
    encoded = quote(raw, safe=_SAFE_METADATA)
    if len(encoded) <= limit:
        return encoded, False
    # The longest prefix of the bytes that fits, backed off to a UTF-8 character boundary.
    low, high = 0, len(raw)
    while low < high:
        middle = (low + high + 1) // 2
        if len(quote(raw[:middle], safe=_SAFE_METADATA)) <= limit:
            low = middle
        else:
            high = middle - 1
    while 0 < low < len(raw) and raw[low] & 0xC0 == 0x80:
        low -= 1
    return quote(raw[:low], safe=_SAFE_METADATA), True


def _encoded(fields: dict[str, str | bytes]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for name, value in fields.items():
        metadata[name], cut = metadata_value(value, _METADATA_LIMITS.get(name, 256))
        if cut:
            metadata[f"{name}_truncated"] = "true"
    return metadata


def streamed_metadata(mailbox: str, folder: str, uidvalidity: int, info: MessageInfo,
                      digest: MessageDigest) -> dict[str, str]:
    """Metadata stored with each IMAP blob, for downstream consumers and for resyncs."""
    return _encoded({
        "mailbox": mailbox,
        "folder": folder,
        "uidvalidity": str(uidvalidity),
        "uid": str(info.uid),
        "internal_date": internal_date_text(info.internal_date),
        "message_id": digest.header("message-id") or b"",
        "size": str(digest.size),
        "dedup_key": digest.dedup_key(info.internal_date),
    })


def blob_metadata(mailbox: str, folder: str, uidvalidity: int,
                  message: FetchedMessage) -> dict[str, str]:
    """``streamed_metadata`` of a message read whole."""
    info = MessageInfo(message.uid, len(message.raw), message.internal_date)
    return streamed_metadata(mailbox, folder, uidvalidity, info, MessageDigest(message.raw))


def pop3_blob_name(mailbox: str, uidl: str) -> str:
    """The deterministic name of a POP3 message's blob, from its unique id (UIDL).

    The ``pop3`` segment keeps these apart from IMAP blobs of the same Inbox, whose third
    segment is a UIDVALIDITY number.
    """
    return f"{path_segment(mailbox.lower())}/INBOX/pop3/{path_segment(uidl)}.eml"


def pop3_prefix(mailbox: str) -> str:
    """Prefix of every POP3 blob of a mailbox."""
    return f"{path_segment(mailbox.lower())}/INBOX/pop3/"


def pop3_blob_metadata(mailbox: str, uidl: str, raw: bytes) -> dict[str, str]:
    """Metadata stored with each POP3 blob; like ``blob_metadata`` with the UIDL as the id."""
    return pop3_streamed_metadata(mailbox, uidl, MessageDigest(raw))


def pop3_streamed_metadata(mailbox: str, uidl: str, digest: MessageDigest) -> dict[str, str]:
    """``pop3_blob_metadata`` of a message read in pieces into ``digest``."""
    return _encoded({
        "mailbox": mailbox,
        "folder": "INBOX",
        "uidl": uidl,
        "message_id": digest.header("message-id") or b"",
        "size": str(digest.size),
        "dedup_key": digest.dedup_key(None),
    })


# A blob lease lasts 15 to 60 seconds (or forever, which a crashed worker would never give
# back). The longest, renewed while the poll runs: a crashed worker blocks its mailbox for
# at most this long.
LEASE_SECONDS = 60
LEASE_CONTAINER_SUFFIX = "-leases"
_MAX_CONTAINER_NAME = 63


def lease_container_name(blob_container: str) -> str:
    """The container of the lease blobs: beside the mail container, never inside it."""
    name = blob_container + LEASE_CONTAINER_SUFFIX
    if len(name) <= _MAX_CONTAINER_NAME:
        return name
    # Too long for a container name: keep it unique to this mail container with a digest.
    digest = hashlib.sha256(blob_container.encode()).hexdigest()[:8]
    keep = _MAX_CONTAINER_NAME - len(LEASE_CONTAINER_SUFFIX) - len(digest) - 1
    return f"{blob_container[:keep].rstrip('-')}-{digest}{LEASE_CONTAINER_SUFFIX}"


def lease_blob_name(address: str) -> str:
    """The lease blob of a mailbox; addresses are case-insensitive."""
    return address.strip().lower()


# POP3 checkpoints keep each delivered UIDL as the first 8 bytes of its SHA-256.
DIGEST_BYTES = 8


def uidl_digest(uidl: str) -> bytes:
    """The checkpoint's compact form of a UIDL: the first 8 bytes of its SHA-256."""
    return hashlib.sha256(uidl.encode("utf-8", "surrogateescape")).digest()[:DIGEST_BYTES]
