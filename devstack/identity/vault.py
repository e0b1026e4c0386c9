"""Key Vault's data plane, read-only: ``GET /secrets/{name}[/{version}]`` and
``GET /certificates/{name}[/{version}]``, behind the 401 challenge and an RBAC check."""

from __future__ import annotations

import base64
import re
from typing import Any

import jwt

from devstack.identity.certs import b64url
from devstack.identity.endpoint import Emulator, Reply, Request
from devstack.identity.state import SecretVersion, VaultCertificate
from devstack.identity.tokens import VAULT_RESOURCE, issuer_for

VAULT_RE = re.compile(
    r"^/(secrets|certificates)/([0-9A-Za-z-]{1,127})(?:/([0-9A-Za-z]*))?/?$"
)
NOT_FOUND = (
    "A {kind} with (name/id) {name} was not found in this key vault. If you recently deleted "
    "this {kind} you may be able to recover it using the correct recovery command. For help "
    "resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
)
RECOVERY = {"recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}


class VaultError(Exception):
    """A request the vault refuses; ``challenge`` adds the ``WWW-Authenticate`` header that
    tells a client where to get a token."""

    def __init__(self, status: int, code: str, message: str, *, challenge: bool = False,
                 inner_code: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.challenge = challenge
        self.inner_code = inner_code

    def reply(self, emulator: Emulator) -> Reply:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner_code:
            error["innererror"] = {"code": self.inner_code}
        headers: dict[str, str] = {}
        if self.challenge:
            headers["WWW-Authenticate"] = (
                f'Bearer authorization="{emulator.base_url}/{emulator.tenant}", '
                f'resource="{VAULT_RESOURCE}"'
            )
        return Reply(self.status, {"error": error}, headers)


def _unauthorized(message: str) -> VaultError:
    return VaultError(401, "Unauthorized", message, challenge=True)


def handle(emulator: Emulator, request: Request) -> Reply:
    """A request under ``/secrets/`` or ``/certificates/``."""
    emulator.state.count("vault_requests")
    try:
        return _get(emulator, request)
    except VaultError as e:
        return e.reply(emulator)


def _get(emulator: Emulator, request: Request) -> Reply:
    if request.method != "GET":
        raise VaultError(405, "MethodNotAllowed", f"{request.method} is not supported here.")
    match = VAULT_RE.match(request.path)
    if match is None:
        kind = "certificate" if request.path.startswith("/certificates/") else "secret"
        raise VaultError(400, "BadParameter", f"The {kind} name is not valid.")
    if "api-version" not in request.query:
        raise VaultError(400, "BadParameter", "The request URI contains an invalid api-version.")
    kind, name, version = match.group(1), match.group(2), match.group(3) or None
    _authorize(emulator, request, kind, name)
    if kind == "certificates":
        cert = emulator.state.get_certificate(name, version)
        if cert is None:
            raise VaultError(404, "CertificateNotFound",
                             NOT_FOUND.format(kind="certificate", name=name))
        return Reply(200, _certificate_bundle(emulator.base_url, name, cert))
    item = emulator.state.get_secret(name, version)
    if item is None:
        raise VaultError(404, "SecretNotFound", NOT_FOUND.format(kind="secret", name=name))
    if not item.enabled:
        raise VaultError(403, "Forbidden", "Operation get is not allowed on a disabled secret.")
    return Reply(200, _secret_bundle(emulator.base_url, name, item))


def _authorize(emulator: Emulator, request: Request, kind: str, name: str) -> None:
    """A valid vault token whose principal holds a role that reads ``kind``."""
    token = request.bearer()
    if token is None:
        raise _unauthorized("AKV10000: Request is missing a Bearer or PoP token.")
    try:
        claims = emulator.key.verify(token, audience=VAULT_RESOURCE,
                                     issuer=issuer_for(emulator.tenant))
    except jwt.InvalidAudienceError as e:
        aud = jwt.decode(token, options={"verify_signature": False}).get("aud")
        raise _unauthorized(
            f"AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found: {aud}."
        ) from e
    except jwt.ExpiredSignatureError as e:
        raise _unauthorized("AKV10013: Token has expired.") from e
    except jwt.InvalidTokenError as e:
        raise _unauthorized("AKV10032: Invalid token signature.") from e
    oid = str(claims.get("oid", ""))
    # The readers hold a role that reads secrets and certificates ("Key Vault
    # Certificate User" covers both; "Key Vault Secrets User" the secrets only).
    if emulator.state.is_vault_reader(oid):
        return
    action = "secrets/getSecret/action" if kind == "secrets" else "certificates/read"
    raise VaultError(
        403, "Forbidden",
        f"Caller is not authorized to perform action on resource.\r\n"
        f"If role assignments, deny assignments or role definitions were changed "
        f"recently, please observe propagation time.\r\nCaller: appid="
        f"{claims.get('appid')};oid={oid};iss={claims.get('iss')}\r\nAction: "
        f"'Microsoft.KeyVault/vaults/{action}'\r\nResource: "
        f"'/{kind}/{name.lower()}'\r\nAssignment: (not found)\r\n",
        inner_code="ForbiddenByRbac",
    )


def _secret_bundle(base_url: str, name: str, item: SecretVersion) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "enabled": item.enabled, "created": item.created, "updated": item.updated, **RECOVERY,
    }
    if item.not_before is not None:
        attributes["nbf"] = item.not_before
    if item.expires is not None:
        attributes["exp"] = item.expires
    body: dict[str, Any] = {
        "value": item.value,
        "id": f"{base_url}/secrets/{name}/{item.version}",
        "attributes": attributes,
        "tags": {},
    }
    if item.content_type:
        body["contentType"] = item.content_type
    if item.managed:
        body["kid"] = f"{base_url}/keys/{name}/{item.version}"
        body["managed"] = True
    return body


def _certificate_bundle(base_url: str, name: str, cert: VaultCertificate) -> dict[str, Any]:
    return {
        "id": f"{base_url}/certificates/{name}/{cert.version}",
        "kid": f"{base_url}/keys/{name}/{cert.version}",
        "sid": f"{base_url}/secrets/{name}/{cert.version}",
        "x5t": b64url(cert.x5t),
        "cer": base64.b64encode(cert.cer).decode(),
        "contentType": cert.content_type,
        "attributes": {
            "enabled": True, "nbf": cert.not_before, "exp": cert.expires,
            "created": cert.created, "updated": cert.created, **RECOVERY,
        },
        "policy": {
            "id": f"{base_url}/certificates/{name}/policy",
            "key_props": {"exportable": True, "kty": "RSA", "key_size": 2048,
                          "reuse_key": False},
            "secret_props": {"contentType": cert.content_type},
            "x509_props": {"subject": cert.subject, "ekus": [],
                           "key_usage": ["digitalSignature", "keyEncipherment"]},
            "issuer": {"name": "Self"},
            "attributes": {"enabled": True, "created": cert.created,
                           "updated": cert.created},
        },
        "tags": {},
    }
