"""Per-mailbox poll leases as blob leases, in a container of their own."""

from __future__ import annotations

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, ContainerClient

from shared.adapters.storage_errors import STORAGE_FAILURES, storage_error
from shared.errors import StorageError
from shared.naming import LEASE_SECONDS, lease_blob_name

_ROLE = "Storage Blob Data Contributor"

_SHORTEST, _LONGEST = 15, 60  # what Blob Storage accepts for a lease that expires


class BlobLease:
    """One acquired blob lease."""

    def __init__(self, lease: BlobLeaseClient, mailbox: str) -> None:
        self._lease = lease
        self._mailbox = mailbox

    def renew(self) -> None:
        try:
            self._lease.renew()
        except STORAGE_FAILURES as e:
            raise storage_error(f"renew the poll lease of {self._mailbox}", e, role=_ROLE) from e

    def release(self) -> None:
        try:
            self._lease.release()
        except STORAGE_FAILURES as e:
            raise storage_error(f"release the poll lease of {self._mailbox}", e, role=_ROLE) from e


class BlobLeaseStore:
    """An empty blob per mailbox; holding its lease means polling that mailbox.

    A second acquire while the lease is held gets 409 ``LeaseAlreadyPresent``; a lease that
    is not renewed expires after ``duration_seconds``, so a crashed worker blocks nobody
    for longer than that.
    """

    def __init__(self, container: ContainerClient, *, duration_seconds: int = LEASE_SECONDS) -> None:
        if not _SHORTEST <= duration_seconds <= _LONGEST:
            raise ValueError(f"a blob lease lasts {_SHORTEST} to {_LONGEST} seconds, "
                             f"not {duration_seconds}")
        self._container = container
        self._duration = duration_seconds

    @property
    def duration_seconds(self) -> int:
        return self._duration

    def ensure_container(self) -> None:
        """Create the lease container if it is missing."""
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass
        except STORAGE_FAILURES as e:
            raise storage_error(f"create container '{self._container.container_name}'", e, role=_ROLE) from e

    def acquire(self, mailbox: str) -> BlobLease | None:
        blob = self._container.get_blob_client(lease_blob_name(mailbox))
        action = f"take the poll lease of {mailbox}"
        for _ in range(2):
            try:
                return BlobLease(blob.acquire_lease(lease_duration=self._duration), mailbox)
            except ResourceExistsError as e:
                if getattr(e, "error_code", None) == "LeaseAlreadyPresent":
                    return None
                raise storage_error(action, e, role=_ROLE) from e
            except ResourceNotFoundError:
                self._create_lease_blob(blob.blob_name)
            except STORAGE_FAILURES as e:
                raise storage_error(action, e, role=_ROLE) from e
        raise StorageError(f"Could not {action}: its lease blob keeps disappearing.")

    def _create_lease_blob(self, name: str) -> None:
        for _ in range(2):
            try:
                # Create-only: a worker creating it at the same time may already hold its lease.
                self._container.upload_blob(name, b"", overwrite=False)
                return
            except ResourceExistsError:
                return
            except ResourceNotFoundError:
                # The container is created on first use, so a deployment that made it
                # (and granted the identity on it alone) needs no account-wide role.
                self.ensure_container()
            except STORAGE_FAILURES as e:
                raise storage_error(f"create the lease blob '{name}'", e, role=_ROLE) from e
        raise StorageError(f"Could not create the lease blob '{name}': its container keeps disappearing.")
