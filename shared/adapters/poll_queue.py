"""The fan-out queue in Queue Storage, written the way the Functions queue trigger reads it.

Messages are base64-encoded: the trigger's default ``messageEncoding`` (stated in
host.json), which the host decodes before the function sees the body. They keep the
service's default time to live (7 days): the next timer run queues every mailbox again.
"""

from __future__ import annotations

from azure.storage.queue import QueueClient

from shared.adapters.queue_messages import put_message

_ROLE = "Storage Queue Data Contributor"


class StoragePollQueue:
    """Sends poll messages; the queue is created on first use if it is missing."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    def send(self, text: str) -> None:
        put_message(self._client, text, role=_ROLE,
                    action=f"queue a poll on '{self._client.queue_name}'")
