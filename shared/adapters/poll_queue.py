"""The fan-out queue in Queue Storage, written the way the Functions queue trigger reads it.

Messages are base64-encoded: the trigger's default ``messageEncoding`` (stated in
host.json), which the host decodes before the function sees the body.
"""

from __future__ import annotations

import contextlib

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.queue import QueueClient

from shared.errors import StorageError


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
            raise _storage_error(f"queue a poll on '{self._client.queue_name}'", e) from e


def _storage_error(action: str, error: Exception) -> StorageError:
    code = getattr(error, "error_code", None)
    if isinstance(error, ClientAuthenticationError) or code in (
        "AuthorizationPermissionMismatch", "AuthorizationFailure", "AuthenticationFailed"
    ):
        return StorageError(
            f"Could not {action}: access denied ({code or 'authentication failed'}). Give the "
            "Function App's identity 'Storage Queue Data Contributor' on the mail storage account."
        )
    if isinstance(error, ServiceRequestError):
        return StorageError(f"Could not {action}: storage unreachable. Check MAIL_STORAGE settings.")
    first_line = str(getattr(error, "message", error)).splitlines()[0][:300]
    return StorageError(f"Could not {action}: {code or first_line}.")
