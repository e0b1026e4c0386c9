"""A summary of one message for consumers: who, what, when and which attachments.

Built with the standard library's ``email`` package from bytes already in memory, reading
only the header section unless the message can hold attachments. The parser runs with
policy ``compat32`` and header values are decoded here (8-bit bytes as
UTF-8, then RFC 2047 words): policy ``default`` gives the same text but parses every
header into objects, measured at 3 to 5 ms per small message, more than its whole
delivery costs. It never raises: a malformed header becomes its raw text or None, a part
that cannot be read is left out, and the message is delivered either way. Attachment
names are made safe to use as file names anywhere.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from typing import Any

# What a header value may hold before it is cut (a summary, not an archive).
HEADER_LIMIT = 2000
# Attachments listed per message before the list is cut.
ATTACHMENT_LIMIT = 200
_NAME_BYTES = 200
# Characters that change how a name displays or where it points: controls, bidi
# overrides and isolates, zero-width characters, and look-alikes of path separators and NUL.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\u2400\u2215\u2044\uff0f\uff3c"
    '<>:"/\\\\|?*]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.I)


@dataclass
class AttachmentSummary:
    """One attachment or inline part with a file name or content ID."""

    filename: str
    content_type: str
    size: int
    content_id: str | None
    inline: bool


@dataclass
class MessageSummary:
    """The headers consumers ask for, decoded, and the attachment list."""

    message_id: str | None = None
    date: str | None = None
    from_: str | None = None
    to: str | None = None
    cc: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    in_reply_to: str | None = None
    references: str | None = None
    attachments: list[AttachmentSummary] | None = field(default_factory=list)
    # True when only the head of the message was read (a streamed large message), so the
    # attachment list is unknown; or when the list was cut at ATTACHMENT_LIMIT.
    partial: bool = False

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready data (``from_`` becomes ``from``)."""
        data = asdict(self)
        data["from"] = data.pop("from_")
        return data


class _Utf8Compat32(policy.Compat32):
    """compat32, with 8-bit header bytes read as UTF-8 (RFC 6532) rather than left undecoded."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_POLICY = _Utf8Compat32()

_HEADERS = {"message_id": "message-id", "date": "date", "from_": "from", "to": "to", "cc": "cc",
            "reply_to": "reply-to", "subject": "subject", "in_reply_to": "in-reply-to",
            "references": "references"}


def summarize(raw: bytes, *, head_only: bool = False) -> MessageSummary:
    """The summary of a message; with ``head_only`` the bytes are its start only."""
    parser = BytesParser(policy=_POLICY)
    try:
        message = parser.parsebytes(_header_section(raw), headersonly=True)
    except Exception:  # the parser is lenient; this is the last line of defence
        return MessageSummary(attachments=None, partial=True)
    summary = MessageSummary()
    for attr, name in _HEADERS.items():
        setattr(summary, attr, _header(message, name))
    if head_only:
        summary.attachments, summary.partial = None, True
        return summary
    if message.get_content_maintype() not in ("multipart", "message") \
            and _attachment(message, 1) is None:
        summary.attachments = []  # one body part, and not an attachment
        return summary
    try:
        message = parser.parsebytes(raw)  # the body too: only when it can hold attachments
    except Exception:
        summary.attachments, summary.partial = None, True
        return summary
    attachments: list[AttachmentSummary] = []
    for part in _parts(message):
        if len(attachments) >= ATTACHMENT_LIMIT:
            summary.partial = True
            break
        described = _attachment(part, len(attachments) + 1)
        if described is not None:
            attachments.append(described)
    summary.attachments = attachments
    return summary


def _header_section(raw: bytes) -> bytes:
    """A start of ``raw`` that holds its whole header section: through the first LF LF, CR CR
    or LF CR (lines end in CRLF, CR or LF, so an empty line after a header holds one of
    them), or all of it. The parser stops at the first empty line either way."""
    ends = [at for at in (raw.find(b"\n\n"), raw.find(b"\r\r"), raw.find(b"\n\r")) if at >= 0]
    return raw[:min(ends) + 2] if ends else raw


def _header(message: Message, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else decoded(str(value))[:HEADER_LIMIT]


def decoded(value: str) -> str:
    """A header value as text: unfolded, RFC 2047 words decoded."""
    text = " ".join(value.split())
    if "=?" in text:
        # A broken or unknown encoding keeps the words as they are.
        with contextlib.suppress(Exception):
            text = str(make_header(decode_header(text)))
    return " ".join(text.split())


def _parts(message: Message) -> list[Message]:
    try:
        return list(message.walk())
    except Exception:
        return []


def _attachment(part: Message, number: int) -> AttachmentSummary | None:
    try:
        if part.is_multipart():
            return None
        filename = part.get_filename()
        disposition = part.get_content_disposition()
        content_id = _header(part, "content-id")
        if filename is None and disposition != "attachment" and content_id is None:
            return None  # a body part
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        return AttachmentSummary(
            filename=safe_filename(decoded(str(filename)) if filename else "", number=number,
                                   content_type=part.get_content_type()),
            content_type=part.get_content_type(),
            size=size,
            content_id=content_id,
            inline=disposition == "inline",
        )
    except Exception:
        return None


def safe_filename(name: str, *, number: int = 1, content_type: str = "") -> str:
    """A file name that stays in its folder and shows what it is, on any file system.

    Path parts are dropped (``../x`` and ``C:\\x`` keep only ``x``), controls, bidi
    overrides and separator look-alikes are removed, Windows device names are prefixed,
    and the result is at most 200 UTF-8 bytes with its extension kept.
    """
    text = unicodedata.normalize("NFC", name)
    text = re.split(r"[/\\]", text)[-1]
    text = _UNSAFE.sub("", text).strip().strip(".").strip()
    if _WINDOWS_RESERVED.match(text):
        text = "_" + text
    if not text:
        extension = {"text/plain": ".txt", "text/html": ".html", "application/pdf": ".pdf",
                     "message/rfc822": ".eml"}.get(content_type, ".bin")
        text = f"attachment-{number}{extension}"
    if len(text.encode()) > _NAME_BYTES:
        stem, dot, extension = text.rpartition(".")
        if not dot or len(extension) > 16:
            stem, extension = text, ""
        keep = _NAME_BYTES - len(extension.encode()) - (1 if extension else 0)
        stem = stem.encode()[:keep].decode("utf-8", "ignore")
        text = f"{stem}.{extension}" if extension else stem
    return text


__all__ = ["AttachmentSummary", "MessageSummary", "safe_filename", "summarize"]
