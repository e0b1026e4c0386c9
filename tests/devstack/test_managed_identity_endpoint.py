"""The emulator's App Service managed-identity endpoint over HTTPS: which requests it
refuses and what its tokens hold."""

from __future__ import annotations

import uuid
from typing import Any

import jwt
import pytest
import requests

from devstack.stack import Stack

VAULT = "https://vault.azure.net"
NO_IDENTITY = "No managed identity found for specified ClientId/ResourceId/PrincipalId."


def _ask(stack: Stack, http: requests.Session, **params: str) -> requests.Response:
    return http.get(stack.identity_endpoint, params={"api-version": "2019-08-01", **params},
                    headers={"X-IDENTITY-HEADER": stack.identity_header})


def _refusal(reply: requests.Response, status: int) -> str:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert body["statusCode"] == status
    message: str = body["message"]
    return message


def test_resource_and_api_version_are_required(stack: Stack, http: requests.Session) -> None:
    assert _refusal(_ask(stack, http), 400) == "resource and api-version are required."
    no_version = http.get(stack.identity_endpoint, params={"resource": VAULT},
                          headers={"X-IDENTITY-HEADER": stack.identity_header})
    assert _refusal(no_version, 400) == "resource and api-version are required."
    headerless = http.get(stack.identity_endpoint, params={"resource": VAULT})
    assert _refusal(headerless, 400) == "X-IDENTITY-HEADER is required."


@pytest.mark.parametrize("field", ["client_id", "principal_id", "object_id", "mi_res_id"])
def test_another_identity_is_not_found(
    stack: Stack, http: requests.Session, field: str
) -> None:
    assert _refusal(_ask(stack, http, resource=VAULT, **{field: str(uuid.uuid4())}), 400) == (
        NO_IDENTITY
    )


def test_own_identity_named_any_way_gets_a_token(stack: Stack, http: requests.Session) -> None:
    for named in ({"client_id": stack.managed_identity_client_id.upper()},
                  {"principal_id": stack.managed_identity_object_id},
                  {"object_id": stack.managed_identity_object_id.upper()}):
        assert _ask(stack, http, resource=VAULT, **named).status_code == 200, named


@pytest.mark.parametrize(
    ("resource", "audience"),
    [
        (f"{VAULT}/.default", VAULT),
        (f"{VAULT}/", VAULT),
        ("https://outlook.office365.com", "https://outlook.office365.com"),
        ("api://AzureADTokenExchange", "api://AzureADTokenExchange"),
        ("api://AzureADTokenExchange/.default", "api://AzureADTokenExchange"),
    ],
)
def test_token_audience_follows_resource(
    stack: Stack, http: requests.Session, resource: str, audience: str
) -> None:
    reply = _ask(stack, http, resource=resource)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["resource"] == resource and body["token_type"] == "Bearer"
    claims = jwt.decode(body["access_token"], stack.public_key_pem(), algorithms=["RS256"],
                        audience=audience)
    assert claims["exp"] == int(body["expires_on"])
    assert claims["appid"] == stack.managed_identity_client_id
    assert claims["oid"] == claims["sub"] == stack.managed_identity_object_id
    assert "roles" not in claims


def test_requests_and_tokens_are_counted(stack: Stack, http: requests.Session) -> None:
    before = stack.stats()
    _ask(stack, http, resource=VAULT)
    _ask(stack, http)
    after = stack.stats()
    assert after["msi_requests"] == before["msi_requests"] + 2
    assert after["token_issued"] == before["token_issued"] + 1
