"""Just enough HTTP/1.1 to relay storage requests byte for byte, and to answer one the way
Azure Storage answers when it is busy or failing."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate

from devstack.faults.relay import CHUNK

HEAD_LIMIT = 64 * 1024
DEFAULT_VERSION = "2021-12-02"
ERRORS = {
    "busy": (503, "ServerBusy", "The server is busy."),
    "error": (500, "InternalError", "The server encountered an internal error. Please retry the request."),
}
SERVERS = {"blob": "Windows-Azure-Blob/1.0", "queue": "Windows-Azure-Queue/1.0",
           "table": "Windows-Azure-Table/1.0"}


class HttpError(ConnectionError):
    """The peer sent something that is not HTTP/1.1, or closed in the middle of a message."""


@dataclass(frozen=True)
class Head:
    """A request or response line with its headers, and the exact bytes they came as."""

    raw: bytes
    start: str
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0].upper()

    @property
    def target(self) -> str:
        parts = self.start.split(" ")
        return parts[1] if len(parts) > 1 else "/"

    @property
    def status(self) -> int:
        parts = self.start.split(" ")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    @property
    def wants_close(self) -> bool:
        return (self.header("connection") or "").lower() == "close"


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next message head; None when the peer closed cleanly between messages."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise HttpError("connection closed inside a message head") from e
    except asyncio.LimitOverrunError as e:
        raise HttpError("message head too long") from e
    lines = raw.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Head(raw, lines[0], headers)


async def relay_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, head: Head,
                     *, request_method: str | None = None) -> bool:
    """Copy the body that ``head`` frames (or drop it when ``writer`` is None).

    ``request_method`` is given for a response (HEAD, 1xx, 204 and 304 have no body).
    False means the body ran to the end of the connection, which cannot be reused.
    """
    if request_method is not None and (
            request_method == "HEAD" or head.status in (204, 304) or 100 <= head.status < 200):
        return True
    try:
        if "chunked" in (head.header("transfer-encoding") or "").lower():
            await _copy_chunked(reader, writer)
            return True
        length = head.header("content-length")
        if length is not None:
            await _copy_exactly(reader, writer, int(length))
            return True
        if request_method is None:
            return True  # a request without a length has no body
        while data := await reader.read(CHUNK):
            await _write(writer, data)
        return False
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
        raise HttpError(f"broken message body: {e}") from e


async def _write(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    if writer is not None:
        writer.write(data)
        await writer.drain()


async def _copy_exactly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, size: int) -> None:
    while size > 0:
        data = await reader.readexactly(min(CHUNK, size))
        size -= len(data)
        await _write(writer, data)


async def _copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        await _write(writer, size_line)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                await _write(writer, trailer)
            await _write(writer, trailer)
            return
        await _copy_exactly(reader, writer, size + 2)


def error_response(kind: str, service: str, request: Head) -> tuple[bytes, str]:
    """Azure Storage's answer for ``kind`` ("busy" or "error"), and its error code."""
    status, code, message = ERRORS[kind]
    request_id = str(uuid.uuid4())
    date = formatdate(usegmt=True)
    text = f"{message}\nRequestId:{request_id}\nTime:{_iso_now()}"
    if service == "table":
        content_type = "application/json;odata=minimalmetadata;streaming=true;charset=utf-8"
        error = {"code": code, "message": {"lang": "en-US", "value": text}}
        body = json.dumps({"odata.error": error}).encode()
    else:
        content_type = "application/xml"
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                f"<Message>{text}</Message></Error>").encode()
    headers = [
        f"HTTP/1.1 {status} {message}",
        f"Content-Length: {len(body)}",
        f"Content-Type: {content_type}",
        f"Server: {SERVERS.get(service, SERVERS['blob'])} Microsoft-HTTPAPI/2.0",
        f"x-ms-request-id: {request_id}",
        f"x-ms-version: {request.header('x-ms-version') or DEFAULT_VERSION}",
        f"x-ms-error-code: {code}",
        f"Date: {date}",
        "Connection: close" if request.wants_close else "Connection: keep-alive",
    ]
    if (client_id := request.header("x-ms-client-request-id")) is not None:
        headers.append(f"x-ms-client-request-id: {client_id}")
    return "\r\n".join(headers).encode() + b"\r\n\r\n" + body, code


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
