"""What identifies a message across a UIDVALIDITY change: its dedup key.

After a UIDVALIDITY change the server numbers every message anew. A message is then skipped
only when it is matched one to one with a blob stored under an earlier UIDVALIDITY whose
``dedup_key`` metadata equals its key (``shared.resync``). So the key must differ for
messages that differ, and stay the same when the server sends the same message again.

A key is ``v2-`` and the SHA-256 (hex) of, each part length-prefixed so none can run into
the next:

- the identity headers, every occurrence in order, as raw bytes with runs of whitespace
  made one space (refolding changes nothing): Message-ID, Date, From, To, Cc, Subject,
  In-Reply-To, References, Resent-Message-ID, Resent-Date (a resent message keeps its
  Message-ID and gains Resent-*);
- the server's internal date, in UTC, to the second;
- the SHA-256 of the body: every byte after the header section.

The header section ends with the first empty line within the first 256 KiB (without one, it
is those 256 KiB). A message read in ranges gets the same key as when read whole.

So two messages with one Message-ID and another subject, date, body or arrival time get
different keys, and so do twins without a Message-ID whose bodies differ; byte-for-byte
copies get one key, and the multiset counts them. Other headers (Received, X-...) are left
out because a server may rebuild them. Exchange rebuilds MIME from its store, so the body
is read as bytes rather than parsed: a body the server rebuilt between the two fetches makes
a new key and the message is delivered again, a duplicate rather than a loss. (Decoding the
MIME parts would survive rebuilds but costs 20-60 ms on a 200 KB message, more than its
upload, on every delivery; the digest costs under a millisecond.)

Keys without ``v2-`` (``mid-...`` from the Message-ID alone, ``hdr-...`` from four headers)
were written by earlier versions. They cannot tell such messages apart, so they never match:
a message stored under one is delivered again after a reset.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

KEY_VERSION = "v2-"
HEAD_BYTES = 256 * 1024
IDENTITY_HEADERS = ("message-id", "date", "from", "to", "cc", "subject", "in-reply-to",
                    "references", "resent-message-id", "resent-date")


def header_section(raw: bytes) -> bytes:
    """The header section, with the empty line that ends it (searched in the first 256 KiB)."""
    # Searched in place: slicing off the first 256 KiB first would copy them.
    crlf = raw.find(b"\r\n\r\n", 0, HEAD_BYTES)
    # A bare-LF empty line counts only before the CRLF one (CRLFCRLF holds no LFLF).
    lf = raw.find(b"\n\n", 0, HEAD_BYTES if crlf < 0 else crlf + 1)
    if lf >= 0:
        return raw[:lf + 2]
    if crlf >= 0:
        return raw[:crlf + 4]
    return raw[:HEAD_BYTES]


def header_fields(section: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, raw value) of each header field, in order; 8-bit bytes kept."""
    plain = _plain_fields(section)
    if plain is not None:
        return plain
    parsed = BytesHeaderParser(policy=compat32).parsebytes(section)
    # The parser reads bytes as ASCII with surrogateescape: encoding back gives the bytes.
    return [(name.lower(), value.encode("ascii", "surrogateescape"))
            for name, value in parsed.raw_items()]


# A field's first line as the email package knows one: a name of printable ASCII but ':'.
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_END = b"\r\n\r\n"


def _plain_fields(section: bytes) -> list[tuple[str, bytes]] | None:
    """``header_fields`` of a plainly written section, read directly: CRLF line ends only,
    every line a field or the folded continuation of one. What the email package (compat32)
    reads from it, at a tenth of its cost; None for anything else (it goes to the parser,
    so keys of odd messages stay what they were)."""
    crlf = section.count(b"\r\n")
    if (section.find(_END) != len(section) - 4 or section.count(b"\r") != crlf
            or section.count(b"\n") != crlf or section[:1] in (b" ", b"\t")):
        return None
    fields: list[tuple[str, bytes]] = []
    for line in section[:-4].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)  # folded: the line end kept, as compat32 does
            continue
        named = _FIELD_NAME.match(line)
        if named is None:
            return None
        end = named.end()
        fields.append((line[:end - 1].decode("ascii").lower(), line[end:].lstrip(b" \t")))
    return fields


def internal_date_text(internal_date: datetime | None) -> str:
    """The internal date in UTC to the second; a naive one is read as local time, as IMAPClient
    gives it."""
    if internal_date is None:
        return ""
    return internal_date.astimezone(UTC).replace(microsecond=0).isoformat()


class MessageDigest:
    """Reads a message once, whole or in chunks: its header fields, size and dedup key."""

    def __init__(self, raw: bytes = b"") -> None:
        """``raw``, if given, is the whole message; else it comes through ``update``."""
        self.size = 0
        self._head = bytearray()
        self._body: hashlib._Hash | None = None
        self._fields: list[tuple[str, bytes]] = []
        if raw:
            # A whole message: split it where it lies, without gathering a copy of its head.
            self.size = len(raw)
            self._split(raw)

    def update(self, chunk: bytes) -> None:
        """The next bytes of the message."""
        self.size += len(chunk)
        if self._body is not None:
            self._body.update(chunk)
        elif not self._head and len(chunk) >= HEAD_BYTES:
            self._split(chunk)
        else:
            self._head += chunk
            if len(self._head) >= HEAD_BYTES:
                self._split(bytes(self._head))

    def _split(self, data: bytes) -> None:
        section = header_section(data)
        self._fields = header_fields(section)
        self._body = hashlib.sha256(memoryview(data)[len(section):])
        self._head = bytearray()

    def _finished(self) -> hashlib._Hash:
        if self._body is None:
            self._split(bytes(self._head))
        assert self._body is not None
        return self._body

    def header(self, name: str) -> bytes | None:
        """The first ``name`` header's value, unfolded and trimmed, as raw bytes; None if absent."""
        self._finished()
        for field, value in self._fields:
            if field == name:
                return value.replace(b"\r", b"").replace(b"\n", b"").strip(b" \t")
        return None

    def dedup_key(self, internal_date: datetime | None) -> str:
        """The key of the message as read so far (call once it is complete)."""
        body = self._finished().digest()
        values: dict[str, list[bytes]] = {name: [] for name in IDENTITY_HEADERS}
        for field, value in self._fields:
            if field in values:
                values[field].append(b" ".join(value.split()))
        parts: list[bytes] = []
        for name in IDENTITY_HEADERS:
            parts.append(name.encode() + b":" + len(values[name]).to_bytes(4, "big"))
            parts += values[name]
        parts += [internal_date_text(internal_date).encode(), body]
        # Each part length-prefixed; hashed in one call.
        key = hashlib.sha256(b"".join(len(part).to_bytes(8, "big") + part for part in parts))
        return KEY_VERSION + key.hexdigest()


def dedup_key(raw: bytes, internal_date: datetime | None) -> str:
    """The dedup key of a whole message."""
    return MessageDigest(raw).dedup_key(internal_date)


def is_current_key(key: str) -> bool:
    """Whether a stored key has this version's format (older ones never match)."""
    return key.startswith(KEY_VERSION)
