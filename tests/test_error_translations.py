"""The pure translations the adapters use, tested without Dovecot, Azurite or the emulator:
POP3's multi-line reader, storage errors, Entra ID's error dicts and certificate parsing."""

from __future__ import annotations

import base64

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

from shared.adapters.app_credentials import load_client_certificate
from shared.adapters.entra import _authentication_error
from shared.adapters.storage_errors import storage_error
from shared.diagnoses import Ids
from shared.errors import CredentialError, FailureKind

K = FailureKind


def storage(exc: Exception, code: str | None = None) -> Exception:
    if code is not None:
        exc.error_code = code  # type: ignore[attr-defined]  # as the storage SDK sets it
    return exc


STORAGE = [
    (storage(ClientAuthenticationError(message="Server failed to authenticate the request.")), None,
     K.STORAGE_DENIED, "access denied (authentication failed)"),
    (storage(HttpResponseError(message="not authorized"), "AuthorizationPermissionMismatch"), None,
     K.STORAGE_DENIED, "AuthorizationPermissionMismatch"),
    (storage(HttpResponseError(message="not authorized"), "AuthorizationFailure"), None,
     K.STORAGE_DENIED, "AuthorizationFailure"),
    (HttpResponseError(message="Forbidden"), "Forbidden", K.STORAGE_DENIED, "access denied (Forbidden)"),
    (ServiceRequestError("Connection refused"), None, K.STORAGE_UNREACHABLE, "storage unreachable"),
    (ServiceResponseError("Connection reset by peer"), None, K.STORAGE_UNREACHABLE,
     "storage dropped the connection before it answered"),
    (ServiceResponseTimeoutError("Read timed out. (read timeout=20)"), None, K.STORAGE_UNREACHABLE,
     "storage did not answer in time"),
    (storage(ResourceExistsError(message="The specified blob already exists."), "BlobAlreadyExists"),
     None, K.STORAGE_FAILED, "BlobAlreadyExists"),
    (HttpResponseError(message="Server busy\nRequestId: 42"), None, K.STORAGE_FAILED, "Server busy."),
]


@pytest.mark.parametrize(("error", "code", "kind", "words"), STORAGE)
def test_storage_errors_map_to_kinds(error: Exception, code: str | None, kind: FailureKind, words: str):
    mapped = storage_error("write blob 'x'", error, role="Storage Blob Data Contributor", code=code)
    assert mapped.kind is kind
    assert str(mapped).startswith("Could not write blob 'x': ") and words in str(mapped)
    assert "RequestId" not in str(mapped)
    assert ("'Storage Blob Data Contributor'" in str(mapped)) is (kind is K.STORAGE_DENIED)


ENTRA = [
    ("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request "
     "is the client secret value, not the client secret ID", K.SECRET_INVALID, "Value, not its Secret ID"),
    ("AADSTS7000222: The provided client secret keys for app '…' are expired.", K.SECRET_EXPIRED,
     "az ad app credential reset --id app-1 --append"),
    ("AADSTS700016: Application with identifier 'app-1' was not found in the directory 'contoso'.",
     K.APP_NOT_FOUND, "M365_TENANT_ID (tenant-1)"),
    ("AADSTS7000112: Application 'app-1' is disabled.", K.APP_DISABLED, "accountEnabled=true"),
    ("AADSTS90002: Tenant 'x' not found.", K.TENANT_NOT_FOUND, "AUTHORITY_HOST"),
    ("AADSTS900023: Specified tenant identifier 'x y' is neither a valid DNS name, nor a valid "
     "external domain.", K.TENANT_MALFORMED, "M365_TENANT_ID"),
    ("AADSTS70011: The provided request must include a 'scope' input parameter.", K.INVALID_SCOPE,
     "TOKEN_SCOPE"),
    ("AADSTS700027: Client assertion failed signature validation.", K.CERTIFICATE_NOT_REGISTERED,
     "Certificates & secrets"),
    ("AADSTS700024: Client assertion is not within its valid time range.", K.CLOCK_SKEW, "clock"),
    ("AADSTS70021: No matching federated identity record found for presented assertion.",
     K.NO_FEDERATED_CREDENTIAL, "api://AzureADTokenExchange"),
    ("AADSTS700213: No matching federated identity record found for presented assertion subject.",
     K.NO_FEDERATED_CREDENTIAL, "api://AzureADTokenExchange"),
    ("AADSTS50059: No tenant-identifying information found.", K.TOKEN_REFUSED, "Entra ID error reference"),
    ("", K.TOKEN_REFUSED, "invalid_client"),
]


@pytest.mark.parametrize(("description", "kind", "advice"), ENTRA)
def test_entra_answers_map_to_kinds_with_their_fix(description: str, kind: FailureKind, advice: str):
    result = {"error": "invalid_client",
              "error_description": f"{description}\r\nTrace ID: 1\r\nCorrelation ID: 2" if description
              else ""}
    error = _authentication_error(result, Ids(client_id="app-1", tenant_id="tenant-1"))
    assert error.kind is kind
    assert error.code == (description.split(":", maxsplit=1)[0] if description else None)
    assert advice in str(error)
    assert "Trace ID" not in str(error) and "**" not in str(error)


@pytest.mark.parametrize(("value", "content_type"), [
    ("not a certificate", None),
    ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "application/x-pem-file"),
    (base64.b64encode(b"\x30\x03\x02\x01\x03").decode(), "application/x-pkcs12"),
])
def test_a_vault_entry_that_is_no_certificate_is_certificate_format(value: str, content_type: str | None):
    with pytest.raises(CredentialError) as caught:
        load_client_certificate(value, content_type, name="mailferry-client-cert")
    assert caught.value.kind is K.CERTIFICATE_FORMAT
    assert "CLIENT_CERTIFICATE_NAME" in str(caught.value)
