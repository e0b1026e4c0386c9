"""The queue of message notices (NOTIFY_QUEUE) in Queue Storage.

Messages are base64-encoded, the Functions queue trigger's default ``messageEncoding``, so a
queue-triggered consumer reads the JSON as sent, and never expire (``messagettl=-1``): a
consumer that is down for a week still finds every notice.
"""

from __future__ import annotations

from azure.storage.queue import QueueClient

from shared.adapters.queue_messages import NEVER_EXPIRES, put_message

_ROLE = "Storage Queue Data Message Sender"


class StorageNoticeQueue:
    """Sends notices; the queue is created on first use if it is missing."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    def send(self, text: str) -> None:
        put_message(self._client, text, ttl_seconds=NEVER_EXPIRES, role=_ROLE,
                    action=f"send a message notice to queue '{self._client.queue_name}'")
