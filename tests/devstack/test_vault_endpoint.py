"""The emulator's Key Vault routes over HTTPS: the request checks, the 401 challenge for
each kind of bad token, role checks, secret versions and disabled secrets."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests

from devstack.identity.tokens import SigningKey
from devstack.stack import CLIENT_SECRET_NAME, Stack

VAULT = "https://vault.azure.net"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


@pytest.fixture
def reader_token(stack: Stack, http: requests.Session) -> str:
    """The managed identity's vault token (it holds a reader role on the vault)."""
    reply = http.get(stack.identity_endpoint,
                     params={"api-version": "2019-08-01", "resource": VAULT},
                     headers={"X-IDENTITY-HEADER": stack.identity_header})
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access_token"]
    return token


def _get(
    stack: Stack, http: requests.Session, path: str, token: str | None = None,
    api_version: str | None = "7.5",
) -> requests.Response:
    params = {"api-version": api_version} if api_version else {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get(f"{stack.vault_url}{path}", params=params, headers=headers)


def _vault_error(reply: requests.Response, status: int, code: str) -> str:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    return message


def _challenged(reply: requests.Response, stack: Stack) -> str:
    """A 401 with the challenge that sends the SDK to the tenant's authority."""
    assert reply.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{stack.authority}", resource="{VAULT}"'
    )
    return _vault_error(reply, 401, "Unauthorized")


def test_request_checks_come_before_the_token(stack: Stack, http: requests.Session) -> None:
    url = f"{stack.vault_url}secrets/{CLIENT_SECRET_NAME}?api-version=7.5"
    for method in ("POST", "PUT"):
        refused = http.request(method, url)
        assert _vault_error(refused, 405, "MethodNotAllowed") == (
            f"{method} is not supported here."
        )
        assert "WWW-Authenticate" not in refused.headers
    assert _vault_error(_get(stack, http, "secrets/bad_name"), 400, "BadParameter") == (
        "The secret name is not valid."
    )
    assert _vault_error(_get(stack, http, "certificates/bad.name"), 400, "BadParameter") == (
        "The certificate name is not valid."
    )
    missing = _get(stack, http, f"secrets/{CLIENT_SECRET_NAME}", api_version=None)
    assert "invalid api-version" in _vault_error(missing, 400, "BadParameter")


def test_each_bad_token_gets_the_challenge(stack: Stack, http: requests.Session) -> None:
    path = f"secrets/{CLIENT_SECRET_NAME}"
    assert _challenged(_get(stack, http, path), stack).startswith("AKV10000: ")
    basic = http.get(f"{stack.vault_url}{path}", params={"api-version": "7.5"},
                     headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert _challenged(basic, stack).startswith("AKV10000: ")
    outlook = _challenged(_get(stack, http, path, stack.issue_token()), stack)
    assert outlook == (
        f"AKV10022: Invalid audience. Expected {VAULT}, found: https://outlook.office365.com."
    )
    expired = stack.issue_token(aud=VAULT, exp=int(time.time()) - 5)
    assert _challenged(_get(stack, http, path, expired), stack) == "AKV10013: Token has expired."
    forged = stack.issue_token(aud=VAULT, key=SigningKey.generate())
    assert _challenged(_get(stack, http, path, forged), stack) == (
        "AKV10032: Invalid token signature."
    )


def test_caller_without_role_is_forbidden_by_rbac(stack: Stack, http: requests.Session) -> None:
    token = stack.issue_token(aud=VAULT, roles=None, appid=AZURE_CLI)
    name = f"Cert-{uuid.uuid4().hex[:8]}"
    for path, action, resource in (
        (f"secrets/{CLIENT_SECRET_NAME}", "secrets/getSecret/action",
         f"/secrets/{CLIENT_SECRET_NAME}"),
        (f"certificates/{name}", "certificates/read", f"/certificates/{name.lower()}"),
    ):
        reply = _get(stack, http, path, token)
        message = _vault_error(reply, 403, "Forbidden")
        assert reply.json()["error"]["innererror"] == {"code": "ForbiddenByRbac"}
        assert f"Caller: appid={AZURE_CLI};oid={stack.client_object_id};" in message
        assert f"Action: 'Microsoft.KeyVault/vaults/{action}'" in message
        assert f"Resource: '{resource}'" in message
        assert "WWW-Authenticate" not in reply.headers


def test_role_granted_and_revoked_at_run_time(stack: Stack, http: requests.Session) -> None:
    token = stack.issue_token(aud=VAULT, roles=None)
    path = f"secrets/{CLIENT_SECRET_NAME}"
    try:
        stack.set_vault_reader(stack.client_object_id)
        granted = _get(stack, http, path, token)
        assert granted.status_code == 200 and granted.json()["value"] == stack.client_secret
    finally:
        stack.set_vault_reader(stack.client_object_id, granted=False)
    _vault_error(_get(stack, http, path, token), 403, "Forbidden")


def test_secret_versions_names_and_attributes(
    stack: Stack, http: requests.Session, reader_token: str
) -> None:
    name = f"versions-{uuid.uuid4().hex[:8]}"
    first = stack.set_vault_secret(name, "one")
    second = stack.set_vault_secret(name, "two", content_type="text/plain")
    latest = _get(stack, http, f"secrets/{name.upper()}/", reader_token).json()
    assert latest["value"] == "two"
    assert latest["id"] == f"{stack.vault_url}secrets/{name.upper()}/{second}"
    assert latest["contentType"] == "text/plain" and latest["tags"] == {}
    attributes = latest["attributes"]
    assert attributes["enabled"] is True and attributes["created"] == attributes["updated"]
    assert attributes["recoveryLevel"] == "Recoverable+Purgeable"
    assert not {"exp", "nbf"} & attributes.keys() and "managed" not in latest
    older = _get(stack, http, f"secrets/{name}/{first}", reader_token).json()
    assert older["value"] == "one" and "contentType" not in older

    missing = _get(stack, http, f"secrets/{name}/{uuid.uuid4().hex}", reader_token)
    assert _vault_error(missing, 404, "SecretNotFound").startswith(
        f"A secret with (name/id) {name} was not found in this key vault."
    )


def test_disabled_secret_is_forbidden(
    stack: Stack, http: requests.Session, reader_token: str
) -> None:
    name = f"disabled-{uuid.uuid4().hex[:8]}"
    stack.set_vault_secret(name, "hidden", enabled=False)
    reply = _get(stack, http, f"secrets/{name}", reader_token)
    assert _vault_error(reply, 403, "Forbidden") == (
        "Operation get is not allowed on a disabled secret."
    )
    assert "hidden" not in reply.text


def test_missing_certificate_names_a_certificate(
    stack: Stack, http: requests.Session, reader_token: str
) -> None:
    name = f"absent-{uuid.uuid4().hex[:8]}"
    message = _vault_error(_get(stack, http, f"certificates/{name}", reader_token), 404,
                           "CertificateNotFound")
    assert message.startswith(f"A certificate with (name/id) {name} was not found")
    assert "deleted this certificate" in message


def test_vault_requests_are_counted(
    stack: Stack, http: requests.Session, reader_token: str
) -> None:
    before = stack.stats()["vault_requests"]
    _get(stack, http, f"secrets/{CLIENT_SECRET_NAME}", reader_token)
    _get(stack, http, "secrets/bad_name")
    assert stack.stats()["vault_requests"] == before + 2
