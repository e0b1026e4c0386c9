"""The notice of one delivered message (schema ``mailferry.message.v1``) and the summary
fields of its blob metadata, each trimmed to what its destination holds.

A notice is one JSON object (docs/downstream.md has the schema). A Storage queue message
holds 64 KiB once base64-encoded, so the JSON is kept to 47 KiB of UTF-8: when it is longer,
the attachment list goes first (``summary.partial`` becomes true), then the header fields
are cut shorter and shorter. Blob metadata holds 8 KiB of names and values in all: the
summary fields take what the fields of ``shared.naming`` leave, encoded the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from shared.naming import metadata_value
from shared.summary import MessageSummary

SCHEMA = "mailferry.message.v1"
# 64 KiB of base64 is 48 KiB of text; a margin below that for the queue's own envelope.
NOTICE_BYTES = 47 * 1024
# Storage's limit on all metadata names and values of a blob together; a margin below it.
METADATA_BYTES = 8 * 1024 - 192
# Summary fields in blob metadata, each at most this many encoded characters.
_METADATA_SUMMARY = (("subject", 1024), ("from", 512))
_HEADER_FIELDS = ("references", "to", "cc", "subject", "from", "reply_to", "in_reply_to",
                  "message_id", "date")


@dataclass(frozen=True)
class Delivery:
    """A message whose blob exists: where it is, what its bytes are, and what it says."""

    container: str
    container_url: str
    name: str
    metadata: Mapping[str, str]
    size: int
    sha256: str
    summary: MessageSummary
    summary_blob: str | None = None


def notice_id(container: str, name: str) -> str:
    """The same for every notice of one blob, so consumers can drop repeats."""
    return hashlib.sha256(f"{container}/{name}".encode("utf-8", "surrogateescape")).hexdigest()[:32]


def summary_blob_name(name: str) -> str:
    """The summary document beside a message blob: ``….eml`` becomes ``….json``."""
    return name.removesuffix(".eml") + ".json"


def notice_document(delivery: Delivery) -> dict[str, Any]:
    """The notice as JSON-ready data, untrimmed (the summary blob holds this)."""
    return _encodable(_document(delivery))[0]


def _document(delivery: Delivery) -> dict[str, Any]:
    """The notice's fields as they are (a header's undecodable bytes still lone surrogates)."""
    metadata = delivery.metadata

    def field(key: str) -> str | None:
        value = metadata.get(key)
        return None if value is None else unquote(value)  # invalid UTF-8 becomes U+FFFD

    uidl = field("uidl")
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "id": notice_id(delivery.container, delivery.name),
        "container": delivery.container,
        "blob_name": delivery.name,
        "blob_url": f"{delivery.container_url}/{quote(delivery.name, safe='/~')}",
        "summary_blob_name": delivery.summary_blob,
        "protocol": "imap" if uidl is None else "pop3",
        "mailbox": field("mailbox"),
        "folder": field("folder"),
        "uidvalidity": _number(field("uidvalidity")),
        "uid": _number(field("uid")),
        "uidl": uidl,
        "size": delivery.size,
        "sha256": delivery.sha256,
        "internal_date": field("internal_date") or None,
        # Fields the blob metadata had to cut (very long folder names or UIDLs).
        "truncated": sorted(k.removesuffix("_truncated") for k in metadata if k.endswith("_truncated")),
        "summary": delivery.summary.to_json(),
    }
    return document


def _encodable(document: dict[str, Any]) -> tuple[dict[str, Any], str, bytes]:
    """``document`` made valid Unicode if it must be, with its JSON text and UTF-8 bytes."""
    text = _dumps(document)
    try:
        return document, text, text.encode()
    except UnicodeEncodeError:  # rare: only mail with undecodable header bytes gets here
        document = _valid_text(document)
        text = _dumps(document)
        return document, text, text.encode()


def notice_text(delivery: Delivery, *, limit: int = NOTICE_BYTES) -> str:
    """The notice as JSON of at most ``limit`` UTF-8 bytes: what a queue message holds."""
    document, text, encoded = _encodable(_document(delivery))
    if len(encoded) <= limit:
        return text
    summary = dict(document["summary"], attachments=None, partial=True)
    for cut in (-1, 1000, 200, 50, 0):  # -1: only the attachment list goes
        for key in _HEADER_FIELDS if cut >= 0 else ():
            value = summary.get(key)
            if isinstance(value, str) and len(value) > cut:
                summary[key] = value[:cut] if cut else None
        text = _dumps(document | {"summary": summary})
        if len(text.encode()) <= limit:
            return text
    return text  # not reached: without the summary the rest is bounded by the metadata's limits


def described_metadata(metadata: Mapping[str, str], summary: MessageSummary,
                       sha256: str) -> dict[str, str]:
    """``metadata`` plus ``sha256``, ``attachment_count``, ``subject`` and ``from``, all
    within storage's 8 KiB; a cut value has ``<name>_truncated`` set to ``true``."""
    described = dict(metadata)
    described["sha256"] = sha256
    if summary.attachments is not None:
        described["attachment_count"] = str(len(summary.attachments))
    values = {"subject": summary.subject, "from": summary.from_}
    fields = [(key, most, value) for key, most in _METADATA_SUMMARY
              if (value := values[key]) is not None]
    for index, (key, most, value) in enumerate(fields):
        # Room is kept for the _truncated flags of this field and the ones after it.
        flags = sum(len(f"{k}_truncated") + len("true") for k, _, _ in fields[index:])
        room = METADATA_BYTES - _metadata_bytes(described) - flags - len(key)
        encoded, cut = metadata_value(value, max(0, min(most, room)))
        if encoded:
            described[key] = encoded
        if cut:
            described[f"{key}_truncated"] = "true"
    return described


def _metadata_bytes(metadata: Mapping[str, str]) -> int:
    return sum(len(k) + len(v) for k, v in metadata.items())


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _valid_text(value: Any) -> Any:
    """``value`` with every string made valid Unicode: a header's undecodable bytes (kept by
    the parser as lone surrogates) become U+FFFD, so any JSON reader accepts the notice."""
    if isinstance(value, str):
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _valid_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_text(v) for v in value]
    return value


__all__ = ["SCHEMA", "Delivery", "described_metadata", "notice_document", "notice_id",
           "notice_text", "summary_blob_name"]
