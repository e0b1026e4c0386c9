"""Delivers messages as create-only blobs in one container."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Mapping

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ServiceRequestError,
)
from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings

from shared.adapters.storage_errors import storage_error

_ROLE = "Storage Blob Data Contributor"

_EML = ContentSettings(content_type="message/rfc822")


class BlobMessageSink:
    """One blob per message; an existing blob of the same name means it was delivered before."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def ensure_container(self) -> None:
        """Create the container if it is missing."""
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass
        except (HttpResponseError, ServiceRequestError) as e:
            raise storage_error(f"create container '{self._container.container_name}'", e, role=_ROLE) from e

    def create(self, name: str, raw: bytes, metadata: Mapping[str, str]) -> bool:
        try:
            # overwrite=False sends If-None-Match: *, so two writers cannot both create it.
            self._container.upload_blob(name, raw, overwrite=False, metadata=dict(metadata),
                                        content_settings=_EML)
        except ResourceExistsError:
            return False
        except (HttpResponseError, ServiceRequestError) as e:
            raise storage_error(f"write blob '{name}'", e, role=_ROLE) from e
        return True

    def exists(self, name: str) -> bool:
        try:
            return bool(self._container.get_blob_client(name).exists())
        except (HttpResponseError, ServiceRequestError) as e:
            raise storage_error(f"check blob '{name}'", e, role=_ROLE) from e

    def create_from_chunks(self, name: str, chunks: Iterable[bytes],
                           metadata: Callable[[], Mapping[str, str]]) -> bool:
        blob = self._container.get_blob_client(name)
        blocks: list[BlobBlock] = []
        try:
            for index, chunk in enumerate(chunks):
                block_id = base64.b64encode(f"{index:08d}".encode()).decode()
                blob.stage_block(block_id, chunk, length=len(chunk))
                blocks.append(BlobBlock(block_id))
            # Create-only: a blob that appeared meanwhile means another run delivered it.
            blob.commit_block_list(blocks, metadata=dict(metadata()), content_settings=_EML,
                                   match_condition=MatchConditions.IfMissing)
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except (HttpResponseError, ServiceRequestError) as e:
            raise storage_error(f"write blob '{name}' in blocks", e, role=_ROLE) from e
        return True

    def list_dedup_keys(self, prefix: str) -> Iterator[tuple[str, str]]:
        try:
            for blob in self._container.list_blobs(name_starts_with=prefix, include=["metadata"]):
                key = (blob.metadata or {}).get("dedup_key")
                if key:
                    yield blob.name, key
        except (HttpResponseError, ServiceRequestError) as e:
            raise storage_error(f"list blobs under '{prefix}'", e, role=_ROLE) from e
