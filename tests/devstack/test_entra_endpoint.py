"""The emulator's Entra ID routes over HTTPS: tenants, the OpenID configuration, the token
endpoint's checks of grant, client, scope and credential, each refused the way Entra does."""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import jwt
import pytest
import requests

from devstack.identity.certs import AppCertificate, generate_app_certificate
from devstack.stack import TOKEN_SCOPE, Stack
from tests.devstack.client_assertions import JWT_BEARER, certificate_assertion

VAULT = "https://vault.azure.net"
OUTLOOK = "https://outlook.office365.com"


def _token_url(stack: Stack, tenant: str | None = None) -> str:
    return f"{stack.base_url}/{tenant or stack.tenant_id}/oauth2/v2.0/token"


def _post(
    stack: Stack, http: requests.Session, *, tenant: str | None = None, **form: str
) -> requests.Response:
    """A client-credentials request with the app's secret, ``form`` replacing fields
    (an empty string drops one)."""
    fields = {"grant_type": "client_credentials", "client_id": stack.client_id,
              "client_secret": stack.client_secret, "scope": TOKEN_SCOPE, **form}
    return http.post(_token_url(stack, tenant), data={k: v for k, v in fields.items() if v})


def _refused(reply: requests.Response, status: int, error: str, code: int) -> str:
    """The Entra error body; returns its description."""
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= body.keys()
    assert body["error_uri"].endswith(f"/error?code={code}")
    description: str = body["error_description"]
    assert description.startswith(f"AADSTS{code}: ")
    assert f"Trace ID: {body['trace_id']} Correlation ID: {body['correlation_id']}" in description
    return description


def _claims(reply: requests.Response, stack: Stack, audience: str) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    claims: dict[str, Any] = jwt.decode(
        body["access_token"], stack.public_key_pem(), algorithms=["RS256"], audience=audience
    )
    return claims


def _with_assertion(assertion: str, **form: str) -> dict[str, str]:
    return {"client_secret": "", "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion, **form}


@pytest.fixture
def registered(stack: Stack) -> Iterator[AppCertificate]:
    """A client certificate registered on the app, unregistered afterwards."""
    cert = stack.create_app_certificate(name=f"entra-{uuid.uuid4().hex[:10]}")
    yield cert
    stack.unregister_app_certificates()


# -- tenants and discovery ---------------------------------------------------------------
def test_openid_configuration_names_the_tenant_for_every_alias(
    stack: Stack, http: requests.Session
) -> None:
    for alias in (stack.tenant_id, stack.tenant_id.upper(), "organizations", "common"):
        reply = http.get(f"{stack.base_url}/{alias}/v2.0/.well-known/openid-configuration")
        assert reply.status_code == 200, alias
        config = reply.json()
        assert config["token_endpoint"] == _token_url(stack)
        assert config["issuer"] == f"{stack.authority}/v2.0"
        assert config["jwks_uri"] == f"{stack.authority}/discovery/v2.0/keys"
        assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    keys = http.get(f"{stack.base_url}/common/discovery/keys").json()["keys"]
    assert [k["kid"] for k in keys] == [stack.signing_key.kid]


def test_unknown_tenant_is_aadsts90002(stack: Stack, http: requests.Session) -> None:
    tenant = str(uuid.uuid4())
    configuration = f"{stack.base_url}/{tenant}/v2.0/.well-known/openid-configuration"
    _refused(http.get(configuration), 400, "invalid_request", 90002)
    description = _refused(_post(stack, http, tenant=tenant), 400, "invalid_request", 90002)
    assert description.startswith(f"AADSTS90002: Tenant '{tenant}' not found.")


def test_wrong_methods_get_405(stack: Stack, http: requests.Session) -> None:
    configuration = f"{stack.authority}/v2.0/.well-known/openid-configuration"
    refused = http.post(configuration)
    assert refused.status_code == 405 and refused.content == b""
    assert http.get(_token_url(stack)).status_code == 405


# -- grant, client and scope ---------------------------------------------------------------
def test_grant_client_and_scope_are_checked_in_order(
    stack: Stack, http: requests.Session
) -> None:
    _refused(_post(stack, http, grant_type="password", client_id=""), 400,
             "unsupported_grant_type", 70003)
    missing = _refused(_post(stack, http, client_id=""), 400, "invalid_request", 900144)
    assert "'client_id'" in missing
    _refused(_post(stack, http, scope=""), 400, "invalid_request", 90014)
    for scope in (f"{VAULT}/.default https://outlook.office365.com/.default",
                  "https://outlook.office365.com/IMAP.AccessAsApp"):
        invalid = _refused(_post(stack, http, scope=scope), 400, "invalid_scope", 70011)
        assert f"The scope {scope} is not valid." in invalid
    unknown_client = str(uuid.uuid4())
    refused = _post(stack, http, client_id=unknown_client, client_secret="")
    assert f"'{unknown_client}' was not found" in _refused(
        refused, 400, "unauthorized_client", 700016
    )


def test_scopes_choose_audience_and_only_outlook_gets_roles(
    stack: Stack, http: requests.Session
) -> None:
    outlook = _claims(_post(stack, http, client_id=stack.client_id.upper()), stack,
                      OUTLOOK)
    assert outlook["roles"] == ["IMAP.AccessAsApp", "POP.AccessAsApp"]
    vault = _claims(_post(stack, http, scope=f"{VAULT}/.default"), stack, VAULT)
    assert "roles" not in vault and vault["oid"] == stack.client_object_id
    graph = _claims(_post(stack, http, scope="https://graph.microsoft.com//.default"), stack,
                    "https://graph.microsoft.com")
    assert graph["appid"] == stack.client_id


def test_counters_follow_requests_and_issued_tokens(
    stack: Stack, http: requests.Session
) -> None:
    before = stack.stats()
    _post(stack, http)
    _post(stack, http, client_secret="wrong")
    after = stack.stats()
    assert after["token_requests"] == before["token_requests"] + 2
    assert after["token_issued"] == before["token_issued"] + 1


# -- client secrets --------------------------------------------------------------------
def test_secret_in_basic_authorization(stack: Stack, http: requests.Session) -> None:
    def basic(client_id: str, secret: str) -> dict[str, str]:
        pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}

    form = {"grant_type": "client_credentials", "scope": TOKEN_SCOPE}
    ok = http.post(_token_url(stack), data=form,
                   headers=basic(stack.client_id, stack.client_secret))
    assert _claims(ok, stack, OUTLOOK)["appid"] == stack.client_id
    wrong = http.post(_token_url(stack), data=form, headers=basic(stack.client_id, "nope"))
    _refused(wrong, 401, "invalid_client", 7000215)


def test_missing_credential_is_aadsts7000216(stack: Stack, http: requests.Session) -> None:
    _refused(_post(stack, http, client_secret=""), 401, "invalid_client", 7000216)


def test_rotation_keeping_the_old_secret_accepts_both(
    stack: Stack, http: requests.Session
) -> None:
    old = stack.client_secret
    try:
        new = stack.rotate_client_secret(keep_old=True)
        for secret in (old, new):
            _claims(_post(stack, http, client_secret=secret), stack,
                    OUTLOOK)
    finally:
        stack.rotate_client_secret()


# -- client assertions -----------------------------------------------------------------
def test_unreadable_assertions_are_aadsts50027(
    stack: Stack, http: requests.Session, registered: AppCertificate
) -> None:
    wrong_type = _with_assertion("x.y.z", client_assertion_type="urn:other")
    description = _refused(_post(stack, http, **wrong_type), 400, "invalid_request", 50027)
    assert "client_assertion_type is not supported" in description
    _refused(_post(stack, http, **_with_assertion("not-a-jwt")), 400, "invalid_request", 50027)
    for overrides in ({"exp": None}, {"exp": "soon"}, {"nbf": "now"}):
        assertion = certificate_assertion(stack, registered, **overrides)
        _refused(_post(stack, http, **_with_assertion(assertion)), 400, "invalid_request",
                 50027)


def test_assertion_names_the_client_without_client_id(
    stack: Stack, http: requests.Session, registered: AppCertificate
) -> None:
    reply = _post(stack, http, **_with_assertion(certificate_assertion(stack, registered),
                                                 client_id=""))
    assert _claims(reply, stack, OUTLOOK)["appid"] == stack.client_id


def test_assertion_audience_may_name_v1_endpoint_or_tenant_alias(
    stack: Stack, http: requests.Session, registered: AppCertificate
) -> None:
    for audience in (f"{stack.authority}/oauth2/token", ["urn:other", _token_url(stack)]):
        assertion = certificate_assertion(stack, registered, aud=audience)
        _claims(_post(stack, http, **_with_assertion(assertion)), stack, OUTLOOK)
    alias = certificate_assertion(stack, registered, aud=_token_url(stack, "organizations"))
    _claims(_post(stack, http, tenant="organizations", **_with_assertion(alias)), stack, OUTLOOK)
    _refused(_post(stack, http, **_with_assertion(alias)), 401, "invalid_client", 700023)


def test_assertion_within_clock_skew_is_accepted(
    stack: Stack, http: requests.Session, registered: AppCertificate
) -> None:
    now = int(time.time())
    lately = certificate_assertion(stack, registered, iat=now - 900, nbf=now - 900,
                                   exp=now - 200)
    early = certificate_assertion(stack, registered, nbf=now + 200, exp=now + 900)
    for assertion in (lately, early):
        _claims(_post(stack, http, **_with_assertion(assertion)), stack, OUTLOOK)


def test_unsupported_algorithm_is_aadsts5002738(
    stack: Stack, http: requests.Session, registered: AppCertificate
) -> None:
    assertion = certificate_assertion(stack, registered, algorithm="HS256", key=b"k" * 64)
    description = _refused(_post(stack, http, **_with_assertion(assertion)), 401,
                           "invalid_client", 5002738)
    assert "'HS256' is not a supported signature algorithm" in description


def test_certificate_not_yet_valid_is_aadsts700027(stack: Stack, http: requests.Session) -> None:
    future = generate_app_certificate(
        "future", valid_from=dt.datetime.now(dt.UTC) + dt.timedelta(days=1), days_valid=30
    )
    stack.register_app_certificate(future.certificate_pem)
    try:
        assertion = certificate_assertion(stack, future)
        description = _refused(_post(stack, http, **_with_assertion(assertion)), 401,
                               "invalid_client", 700027)
        assert "[Reason - The key used is not yet valid., " in description
        assert f"Thumbprint of key used by client: '{future.thumbprint_sha1}'" in description
    finally:
        stack.unregister_app_certificates()


def test_federated_assertion_of_another_principal_is_aadsts70021(
    stack: Stack, http: requests.Session
) -> None:
    other = stack.issue_token(aud="api://AzureADTokenExchange", sub=str(uuid.uuid4()),
                              roles=None)
    description = _refused(_post(stack, http, **_with_assertion(other)), 401,
                           "invalid_client", 70021)
    assert "No matching federated identity record found" in description
