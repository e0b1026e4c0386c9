"""The queue of message notices (NOTIFY_QUEUE) in Queue Storage.

Messages are base64-encoded, the Functions queue trigger's default ``messageEncoding``, so a
queue-triggered consumer reads the JSON as sent, and never expire (``messagettl=-1``): a
consumer that is down for a week still finds every notice.
"""

from __future__ import annotations

import base64
import contextlib

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest
from azure.storage.queue import QueueClient

from shared.adapters.storage_errors import storage_error

_ROLE = "Storage Queue Data Message Sender"


class StorageNoticeQueue:
    """Sends notices; the queue is created on first use if it is missing."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    def send(self, text: str) -> None:
        body = ("<?xml version='1.0' encoding='utf-8'?>\n<QueueMessage><MessageText>"
                f"{base64.b64encode(text.encode()).decode()}</MessageText></QueueMessage>").encode()
        action = f"send a message notice to queue '{self._client.queue_name}'"
        try:
            status, code = self._put(body)
            if status == 404 and code == "QueueNotFound":
                # Creating needs Contributor; Bicep creates the queue, so a sender never gets here.
                with contextlib.suppress(ResourceExistsError):  # created meanwhile by another run
                    self._client.create_queue()
                status, code = self._put(body)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as e:
            raise storage_error(action, e, role=_ROLE) from e
        if status != 201:
            raise storage_error(action, HttpResponseError(message=f"{status} {code}"), role=_ROLE, code=code)

    def _put(self, body: bytes) -> tuple[int, str | None]:
        # One Put Message through the client's own pipeline (authentication, retries,
        # transport) without send_message's serializer: measured at a third less client CPU
        # per notice, which a poll pays for every message.
        request = HttpRequest(
            "POST", f"{self._client.url}/messages?messagettl=-1",
            headers={"x-ms-version": self._client.api_version, "Content-Type": "application/xml"},
            content=body)
        response = self._client._pipeline.run(request).http_response
        return response.status_code, response.headers.get("x-ms-error-code")
