"""The fan-out queue in Queue Storage, written the way the Functions queue trigger reads it.

Messages are base64-encoded: the trigger's default ``messageEncoding`` (stated in
host.json), which the host decodes before the function sees the body.
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

_ROLE = "Storage Queue Data Contributor"


class StoragePollQueue:
    """Sends poll messages; the queue is created on first use if it is missing."""

    def __init__(self, client: QueueClient) -> None:
        # The client must carry TextBase64EncodePolicy (see wiring), to match the trigger.
        self._client = client

    def send(self, text: str) -> None:
        try:
            try:
                self._client.send_message(text)
            except ResourceNotFoundError:
                with contextlib.suppress(ResourceExistsError):  # created meanwhile by another
                    self._client.create_queue()
                self._client.send_message(text)
        except (HttpResponseError, ServiceRequestError) as e:
            raise storage_error(f"queue a poll on '{self._client.queue_name}'", e, role=_ROLE) from e
