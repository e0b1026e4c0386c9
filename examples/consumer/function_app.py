"""Saves the attachments of each message mailferry delivers: a queue-triggered Function.

Each mailferry notice (schema ``mailferry.message.v1``, one per delivered message, on the
queue NOTIFY_QUEUE) names a message's ``.eml`` blob. This app downloads the blob with its
own identity, checks it against the notice's SHA-256, and writes every attachment to the
container ATTACHMENTS_CONTAINER (default ``<mail container>-attachments``) as
``<mailbox>/<folder>/<UIDVALIDITY>/<UID>/<safe file name>``: the message's blob name without
``.eml``, so messages never share a folder.

Notices arrive at least once: a repeat writes the same names with the same bytes, so it
changes nothing. A failure raises, the host retries, and after ``maxDequeueCount`` tries the
notice waits in ``<queue>-poison``.

It is meant to be copied and changed: it uses only the Azure SDK and the standard library.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterator
from email import policy
from email.message import Message
from email.parser import BytesParser

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

app = func.FunctionApp()
log = logging.getLogger("consumer")

SCHEMA = "mailferry.message.v1"
_NAME_BYTES = 200
# Controls, bidi overrides and isolates, zero-width characters, separators and their
# look-alikes, and what Windows refuses in a file name.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff"
                     '\u2400\u2215\u2044\uff0f\uff3c<>:"/\\\\|?*]')
_WINDOWS_DEVICE = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


@app.queue_trigger(arg_name="message", queue_name="%NOTIFY_QUEUE%", connection="MAIL_STORAGE")
def save_attachments(message: func.QueueMessage) -> None:
    """Write the attachments of the message one notice names."""
    notice = json.loads(message.get_body())
    if notice.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} notice: {str(notice.get('schema'))[:80]}")
    service = blob_service()
    raw = service.get_container_client(notice["container"]).download_blob(notice["blob_name"]).readall()
    if hashlib.sha256(raw).hexdigest() != notice["sha256"]:
        raise ValueError(f"{notice['blob_name']} does not match its notice's sha256")
    target = attachments_container(
        os.environ.get("ATTACHMENTS_CONTAINER") or f"{notice['container']}-attachments")
    folder = notice["blob_name"].removesuffix(".eml")
    saved = 0
    for name, data, content_type in attachments(raw):
        target.upload_blob(f"{folder}/{name}", data, overwrite=True,
                           content_settings=ContentSettings(content_type=content_type))
        saved += 1
    log.info("%s: %d attachment(s) saved under %s/%s", notice["id"], saved, target.container_name, folder)


@functools.cache
def blob_service() -> BlobServiceClient:
    """The mail storage account: a connection string locally, the app's identity on Azure."""
    connection = os.environ.get("MAIL_STORAGE")
    if connection:
        return BlobServiceClient.from_connection_string(connection)
    # The Functions names of an identity-based connection, as the queue trigger reads them.
    client_id = os.environ.get("MAIL_STORAGE__clientId")  # noqa: SIM112
    credential = DefaultAzureCredential(managed_identity_client_id=client_id)
    return BlobServiceClient(os.environ["MAIL_STORAGE__blobServiceUri"], credential=credential)  # noqa: SIM112


@functools.cache
def attachments_container(name: str) -> ContainerClient:
    """The container the attachments go to, created on first use in this process."""
    container = blob_service().get_container_client(name)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    return container


def attachments(raw: bytes) -> Iterator[tuple[str, bytes, str]]:
    """(safe file name, decoded bytes, content type) of each attachment, names unique."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    used: set[str] = set()
    for number, part in enumerate(_attachment_parts(message), start=1):
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        name = _unique(safe_name(part.get_filename() or "", number), used)
        used.add(name.lower())
        yield name, data, part.get_content_type()


def _attachment_parts(message: Message) -> Iterator[Message]:
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_filename() or part.get_content_disposition() == "attachment":
            yield part


def safe_name(name: str, number: int) -> str:
    """A file name that stays in its folder and shows what it is: no path, no controls or
    direction overrides, no Windows device name, at most 200 UTF-8 bytes."""
    text = re.split(r"[/\\]", unicodedata.normalize("NFC", name))[-1]
    text = _UNSAFE.sub("", text).strip().strip(".").strip()
    if _WINDOWS_DEVICE.match(text):
        text = "_" + text
    if not text:
        text = f"attachment-{number}"
    if len(text.encode()) > _NAME_BYTES:
        stem, dot, extension = text.rpartition(".")
        if not dot or len(extension) > 16:
            stem, extension = text, ""
        room = _NAME_BYTES - len(extension.encode()) - (1 if extension else 0)
        stem = stem.encode()[:room].decode("utf-8", "ignore")
        text = f"{stem}.{extension}" if extension else stem
    return text


def _unique(name: str, used: set[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``… when the message already has one like it."""
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    candidate, count = name, 1
    while candidate.lower() in used:
        count += 1
        candidate = f"{stem} ({count}).{extension}" if extension else f"{stem} ({count})"
    return candidate
