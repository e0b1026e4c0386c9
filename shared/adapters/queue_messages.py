"""One Put Message to a Storage queue through the queue client's own pipeline.

``QueueClient.send_message`` builds a generated-client call, an XML serializer and a
response model per message; the same request sent through the client's pipeline (its
authentication, retries and transport) costs a third less client CPU, which the fan-out
timer pays per mailbox and a poll with notices per message. The body is base64-encoded
text: the Functions queue trigger's default ``messageEncoding``, so a queue-triggered
function reads the text as sent.
"""

from __future__ import annotations

import base64
import contextlib

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
)
from azure.core.rest import HttpRequest
from azure.storage.queue import QueueClient

from shared.adapters.storage_errors import STORAGE_FAILURES, storage_error

# messagettl=-1: the message never expires.
NEVER_EXPIRES = -1


def put_message(client: QueueClient, text: str, *, action: str, role: str,
                ttl_seconds: int | None = None) -> None:
    """Queue ``text`` (base64), creating the queue if it is missing; StorageError on failure.

    ``ttl_seconds`` None keeps the service's default time to live (7 days).
    """
    body = ("<?xml version='1.0' encoding='utf-8'?>\n<QueueMessage><MessageText>"
            f"{base64.b64encode(text.encode()).decode()}</MessageText></QueueMessage>").encode()
    try:
        status, code = _put(client, body, ttl_seconds)
        if status == 404 and code == "QueueNotFound":
            # Creating needs Contributor; Bicep creates the queues, so a sender never gets here.
            with contextlib.suppress(ResourceExistsError):  # created meanwhile by another run
                client.create_queue()
            status, code = _put(client, body, ttl_seconds)
    except STORAGE_FAILURES as e:
        raise storage_error(action, e, role=role) from e
    if status != 201:
        raise storage_error(action, HttpResponseError(message=f"{status} {code}"), role=role, code=code)


def _put(client: QueueClient, body: bytes, ttl_seconds: int | None) -> tuple[int, str | None]:
    query = "" if ttl_seconds is None else f"?messagettl={ttl_seconds}"
    request = HttpRequest(
        "POST", f"{client.url}/messages{query}",
        headers={"x-ms-version": client.api_version, "Content-Type": "application/xml"},
        content=body)
    response = client._pipeline.run(request).http_response
    return response.status_code, response.headers.get("x-ms-error-code")


__all__ = ["NEVER_EXPIRES", "put_message"]
