"""Entra ID's v2 endpoints for one tenant: the OpenID configuration, the signing keys and
the client-credentials token endpoint."""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote

from devstack.identity.aadsts import EntraError
from devstack.identity.client_authentication import assertion_client_id, authenticate_client
from devstack.identity.endpoint import Emulator, Reply, Request
from devstack.identity.tokens import (
    DEFAULT_SCOPE_SUFFIX,
    OUTLOOK_RESOURCE,
    TOKEN_LIFETIME,
    VAULT_RESOURCE,
    app_claims,
)

GRAPH_RESOURCE = "https://graph.microsoft.com"
KNOWN_RESOURCES = (OUTLOOK_RESOURCE, VAULT_RESOURCE, GRAPH_RESOURCE)
TENANT_RE = re.compile(r"^/([^/]+)/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token"
                       r"|discovery/v2\.0/keys|discovery/keys)$")


def handle(emulator: Emulator, request: Request, match: re.Match[str]) -> Reply:
    """A request to one of the tenant's endpoints (``match`` is :data:`TENANT_RE`'s)."""
    tenant, what = unquote(match.group(1)), match.group(2)
    try:
        if tenant.lower() not in (emulator.tenant.lower(), "organizations", "common"):
            raise EntraError(
                400, "invalid_request", 90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
                "ID and are signing into the correct cloud.",
            )
        if what.startswith("v2.0/"):
            return _openid_configuration(emulator) if request.method == "GET" else Reply(405)
        if what.startswith("discovery/"):
            return Reply(200, {"keys": [emulator.key.jwk()]})
        return _token(emulator, request) if request.method == "POST" else Reply(405)
    except EntraError as e:
        return e.reply(emulator.base_url)


def _openid_configuration(emulator: Emulator) -> Reply:
    base = f"{emulator.base_url}/{emulator.tenant}"
    return Reply(200, {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post", "private_key_jwt", "client_secret_basic",
        ],
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/v2.0",
        "request_uri_parameter_supported": False,
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    })


def _token(emulator: Emulator, request: Request) -> Reply:
    """The client-credentials grant: checks grant, client, scope and credential in Entra's
    order, then issues an app-only token for the one resource asked for."""
    state = emulator.state
    state.count("token_requests")
    form = request.form()
    grant = form.get("grant_type", "")
    if grant != "client_credentials":
        raise EntraError(400, "unsupported_grant_type", 70003,
                         f"The app requested an unsupported grant type '{grant}'.")
    client_id, secret = _client_and_secret(request, form)
    _check_client_id(emulator, client_id)
    resource = _resource(form.get("scope", "").strip())
    authenticate_client(emulator, request, form, secret, client_id)
    roles = list(state.app_roles) if resource == OUTLOOK_RESOURCE else None
    claims = app_claims(
        tenant=emulator.tenant, client_id=state.config.client_id,
        object_id=state.config.client_object_id, audience=resource, roles=roles,
    )
    state.count("token_issued")
    return Reply(200, {
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME - 1,
        "ext_expires_in": TOKEN_LIFETIME - 1,
        "access_token": emulator.key.sign(claims),
    })


def _client_and_secret(request: Request, form: dict[str, str]) -> tuple[str, str | None]:
    """The client ID and secret from the form or an ``Authorization: Basic`` header."""
    client_id = form.get("client_id", "") or assertion_client_id(form)
    secret = form.get("client_secret")
    basic = request.headers.get("Authorization", "")
    if basic.lower().startswith("basic "):
        decoded = base64.b64decode(basic[6:].strip()).decode(errors="replace")
        user, _, password = decoded.partition(":")
        client_id = client_id or unquote(user)
        secret = unquote(password)
    return client_id, secret


def _check_client_id(emulator: Emulator, client_id: str) -> None:
    if not client_id:
        raise EntraError(
            400, "invalid_request", 900144,
            "The request body must contain the following parameter: 'client_id'.",
        )
    if client_id.lower() != emulator.state.config.client_id.lower():
        raise EntraError(
            400, "unauthorized_client", 700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{emulator.tenant}'. This can happen if the application has not been installed "
            "by the administrator of the tenant or consented to by any user in the tenant. "
            "You may have sent your authentication request to the wrong tenant.",
        )


def _resource(scope: str) -> str:
    """The resource of the one ``<resource>/.default`` scope a client-credentials request
    may ask for."""
    scopes = scope.split()
    if not scopes:
        raise EntraError(
            400, "invalid_request", 90014,
            "The required field 'scope' is missing from the credential. Ensure that you "
            "have all the necessary parameters for the login request.",
        )
    resource = scopes[0].removesuffix(DEFAULT_SCOPE_SUFFIX).rstrip("/")
    if (len(scopes) != 1 or not scopes[0].endswith(DEFAULT_SCOPE_SUFFIX)
            or resource not in KNOWN_RESOURCES):
        raise EntraError(
            400, "invalid_scope", 70011,
            f"The provided request must include a 'scope' input parameter. The provided "
            f"value for the input parameter 'scope' is not valid. The scope {scope} is not "
            "valid.",
        )
    return resource

