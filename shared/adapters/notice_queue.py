"""The queue of message notices (NOTIFY_QUEUE) in Queue Storage.

Messages are base64-encoded, the Functions queue trigger's default ``messageEncoding``, so a
queue-triggered consumer reads the JSON as sent.
"""

from __future__ import annotations

import contextlib

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.queue import QueueClient

from shared.adapters.storage_errors import storage_error

_ROLE = "Storage Queue Data Message Sender"


class StorageNoticeQueue:
    """Sends notices; the queue is created on first use if it is missing."""

    def __init__(self, client: QueueClient) -> None:
        # The client must carry TextBase64EncodePolicy (see wiring), to match the trigger.
        self._client = client

    def send(self, text: str) -> None:
        try:
            try:
                self._client.send_message(text)
            except ResourceNotFoundError:
                # Creating needs Contributor; Bicep creates the queue, so a sender never gets here.
                with contextlib.suppress(ResourceExistsError):  # created meanwhile by another run
                    self._client.create_queue()
                self._client.send_message(text)
        except (HttpResponseError, ServiceRequestError) as e:
            raise storage_error(f"send a message notice to queue '{self._client.queue_name}'", e,
                                role=_ROLE) from e
