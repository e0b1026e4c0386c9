"""Reads delivered message blobs back, and writes the summary documents beside them."""

from __future__ import annotations

from collections.abc import Iterator

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContainerClient, ContentSettings

from shared.adapters.storage_errors import STORAGE_FAILURES, storage_error

_ROLE = "Storage Blob Data Contributor"
_JSON = ContentSettings(content_type="application/json; charset=utf-8")


class BlobDeliveredMessages:
    """The mail container, for what comes after a message's blob is written."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def get_size_and_metadata(self, name: str) -> tuple[int, dict[str, str]]:
        try:
            properties = self._container.get_blob_client(name).get_blob_properties()
        except STORAGE_FAILURES as e:
            raise storage_error(f"read the properties of blob '{name}'", e, role=_ROLE) from e
        return int(properties.size), dict(properties.metadata or {})

    def read(self, name: str, *, length: int | None = None) -> Iterator[bytes]:
        try:
            yield from self._container.download_blob(name, offset=0 if length else None,
                                                      length=length).chunks()
        except HttpResponseError as e:
            if length and e.status_code == 416:  # an empty blob has no range to read
                return
            raise storage_error(f"read blob '{name}'", e, role=_ROLE) from e
        except (ServiceRequestError, ServiceResponseError) as e:
            raise storage_error(f"read blob '{name}'", e, role=_ROLE) from e

    def create_json(self, name: str, text: str) -> bool:
        try:
            # Create-only, like the messages: a document already there is the same one.
            self._container.upload_blob(name, text.encode(), overwrite=False, content_settings=_JSON)
        except ResourceExistsError:
            return False
        except STORAGE_FAILURES as e:
            raise storage_error(f"write the summary blob '{name}'", e, role=_ROLE) from e
        return True
