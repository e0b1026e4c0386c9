"""The App Service / Functions managed-identity endpoint (``IDENTITY_ENDPOINT``, API version
2019-08-01): tokens for the one identity the stack gives the app."""

from __future__ import annotations

import hmac

from devstack.identity.endpoint import Emulator, Reply, Request
from devstack.identity.tokens import DEFAULT_SCOPE_SUFFIX, app_claims


def _refusal(status: int, message: str) -> Reply:
    return Reply(status, {"statusCode": status, "message": message})


def handle(emulator: Emulator, request: Request) -> Reply:
    """``GET ?resource=…&api-version=…`` with the ``X-IDENTITY-HEADER`` secret."""
    state = emulator.state
    state.count("msi_requests")
    config = state.config
    header = request.headers.get("X-IDENTITY-HEADER")
    if header is None:
        return _refusal(400, "X-IDENTITY-HEADER is required.")
    if not hmac.compare_digest(header.encode(), config.identity_header.encode()):
        return _refusal(401, "Unauthorized.")
    query = request.query
    resource = query.get("resource", "")
    if not resource or "api-version" not in query:
        return _refusal(400, "resource and api-version are required.")
    client_id = query.get("client_id")
    principal = query.get("principal_id") or query.get("object_id")
    if (client_id and client_id.lower() != config.managed_identity_client_id.lower()) or (
        principal and principal.lower() != config.managed_identity_object_id.lower()
    ) or query.get("mi_res_id"):
        return _refusal(
            400, "No managed identity found for specified ClientId/ResourceId/PrincipalId."
        )
    audience = resource.removesuffix(DEFAULT_SCOPE_SUFFIX).rstrip("/")
    claims = app_claims(
        tenant=emulator.tenant, client_id=config.managed_identity_client_id,
        object_id=config.managed_identity_object_id, audience=audience, roles=None,
    )
    state.count("token_issued")
    return Reply(200, {
        "access_token": emulator.key.sign(claims),
        "expires_on": str(claims["exp"]),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": config.managed_identity_client_id,
    })
