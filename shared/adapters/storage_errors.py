"""One translation of Azure Storage SDK errors into StorageError, for every storage adapter."""

from __future__ import annotations

from urllib.parse import urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.data.tables import TableClient

from shared.diagnoses import hint
from shared.errors import FailureKind, StorageError

# What a storage call can raise once the SDK's own retries are spent: an answer, no
# connection, or a connection dropped before the answer (a reset mid-response).
STORAGE_FAILURES = (HttpResponseError, ServiceRequestError, ServiceResponseError)

_DENIED = ("AuthorizationPermissionMismatch", "AuthorizationFailure", "AuthenticationFailed",
           "Forbidden")


def storage_error(action: str, error: Exception, *, role: str, code: str | None = None) -> StorageError:
    """A StorageError saying what failed (and in which account) and, when access was denied,
    which role to grant."""
    code = code or getattr(error, "error_code", None)
    account = _account(error)
    if account:
        action = f"{action} in storage account {account}"
    if isinstance(error, ClientAuthenticationError) or code in _DENIED:
        return StorageError(
            f"Could not {action}: access denied ({code or 'authentication failed'}); the Function "
            f"App's identity needs '{role}' on the mail storage account. "
            f"{hint(FailureKind.STORAGE_DENIED)}", kind=FailureKind.STORAGE_DENIED)
    if isinstance(error, ServiceRequestError):
        return StorageError(f"Could not {action}: storage unreachable. "
                            f"{hint(FailureKind.STORAGE_UNREACHABLE)}",
                            kind=FailureKind.STORAGE_UNREACHABLE)
    if isinstance(error, ServiceResponseTimeoutError):
        return StorageError(f"Could not {action}: storage did not answer in time. "
                            f"{hint(FailureKind.STORAGE_UNREACHABLE)}",
                            kind=FailureKind.STORAGE_UNREACHABLE)
    if isinstance(error, ServiceResponseError):
        return StorageError(f"Could not {action}: storage dropped the connection before it "
                            f"answered. {hint(FailureKind.STORAGE_UNREACHABLE)}",
                            kind=FailureKind.STORAGE_UNREACHABLE)
    first_line = str(getattr(error, "message", error)).splitlines()[0][:300]
    return StorageError(f"Could not {action}: {code or first_line}.")


def create_table_if_missing(table: TableClient, *, role: str) -> None:
    """Create the table unless it exists; a failure says which role to grant."""
    try:
        table.create_table()
    except ResourceExistsError:
        pass
    except STORAGE_FAILURES as e:
        raise storage_error(f"create table '{table.table_name}'", e, role=role) from e


def _account(error: Exception) -> str | None:
    """The host (and port) of the storage account a failed request went to, when known: from
    the response's request, or the request the transport's own error carries (requests'
    errors, and the storage transport's ``SendFailed``)."""
    inner = getattr(error, "inner_exception", None)
    for source in (getattr(error, "response", None), inner):
        url = getattr(getattr(source, "request", None), "url", None)
        if isinstance(url, str) and url:
            return urlsplit(url).netloc or None
    return None
