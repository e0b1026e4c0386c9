"""Delivers messages as create-only blobs in one container."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Mapping

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ServiceRequestError,
)
from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings

from shared.errors import StorageError

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
            raise _storage_error(f"create container '{self._container.container_name}'", e) from e

    def create(self, name: str, raw: bytes, metadata: Mapping[str, str]) -> bool:
        try:
            # overwrite=False sends If-None-Match: *, so two writers cannot both create it.
            self._container.upload_blob(name, raw, overwrite=False, metadata=dict(metadata),
                                        content_settings=_EML)
        except ResourceExistsError:
            return False
        except (HttpResponseError, ServiceRequestError) as e:
            raise _storage_error(f"write blob '{name}'", e) from e
        return True

    def exists(self, name: str) -> bool:
        try:
            return bool(self._container.get_blob_client(name).exists())
        except (HttpResponseError, ServiceRequestError) as e:
            raise _storage_error(f"check blob '{name}'", e) from e

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
            raise _storage_error(f"write blob '{name}' in blocks", e) from e
        return True

    def list_dedup_keys(self, prefix: str) -> Iterator[tuple[str, str]]:
        try:
            for blob in self._container.list_blobs(name_starts_with=prefix, include=["metadata"]):
                key = (blob.metadata or {}).get("dedup_key")
                if key:
                    yield blob.name, key
        except (HttpResponseError, ServiceRequestError) as e:
            raise _storage_error(f"list blobs under '{prefix}'", e) from e


def _storage_error(action: str, error: Exception) -> StorageError:
    code = getattr(error, "error_code", None)
    if isinstance(error, ClientAuthenticationError) or code in (
        "AuthorizationPermissionMismatch", "AuthorizationFailure", "AuthenticationFailed"
    ):
        return StorageError(
            f"Could not {action}: access denied ({code or 'authentication failed'}). Give the "
            "Function App's identity 'Storage Blob Data Contributor' on the mail storage account."
        )
    if isinstance(error, ServiceRequestError):
        return StorageError(f"Could not {action}: storage unreachable. Check MAIL_STORAGE settings.")
    first_line = str(getattr(error, "message", error)).splitlines()[0][:300]
    return StorageError(f"Could not {action}: {code or first_line}.")
