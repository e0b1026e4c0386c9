"""HTTPS request handling for Entra ID (v2 endpoints), Key Vault secrets and certificates,
and the App Service managed-identity endpoint."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import ssl
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.identity.certs import b64url, b64url_decode, load_certificate
from devstack.identity.state import EmulatorState, KeyCredential, SecretVersion, VaultCertificate
from devstack.identity.tokens import (
    OUTLOOK_RESOURCE,
    TOKEN_LIFETIME,
    VAULT_RESOURCE,
    SigningKey,
    app_claims,
    issuer_for,
)

log = logging.getLogger("devstack.emulator")

GRAPH_RESOURCE = "https://graph.microsoft.com"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
KNOWN_RESOURCES = (OUTLOOK_RESOURCE, VAULT_RESOURCE, GRAPH_RESOURCE)
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Signature algorithms Entra accepts on a certificate client assertion.
ASSERTION_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
# Clock skew allowed on the assertion's exp/nbf (Microsoft.IdentityModel's default).
ASSERTION_CLOCK_SKEW = 300
CERT_CREDENTIALS_DOC = "https://learn.microsoft.com/entra/identity-platform/certificate-credentials"
KV_NOT_FOUND = (
    "A secret with (name/id) {name} was not found in this key vault. If you recently deleted "
    "this secret you may be able to recover it using the correct recovery command. For help "
    "resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
)

VAULT_RE = re.compile(
    r"^/(secrets|certificates)/([0-9A-Za-z-]{1,127})(?:/([0-9A-Za-z]*))?/?$"
)
TENANT_RE = re.compile(r"^/([^/]+)/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token"
                       r"|discovery/v2\.0/keys|discovery/keys)$")


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        state: EmulatorState,
        key: SigningKey,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(address, EmulatorHandler)
        self.state = state
        self.key = key
        self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def base_url(self) -> str:
        port: int = self.server_address[1]
        return f"https://127.0.0.1:{port}"


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _us_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%m/%d/%Y %H:%M:%S")


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _numeric_date(value: Any) -> int | None:
    """A JWT NumericDate (MSAL sends floats) as whole seconds; None if not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _assertion_client_id(form: dict[str, str]) -> str:
    """Without a ``client_id`` parameter Entra takes the app from the assertion's ``sub``."""
    assertion = form.get("client_assertion")
    if not assertion:
        return ""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return ""
    sub = claims.get("sub")
    return sub if isinstance(sub, str) and sub == claims.get("iss") else ""


def _is_certificate_assertion(
    header: dict[str, Any], claims: dict[str, Any], client_id: str
) -> bool:
    """A certificate assertion names its key by thumbprint and is issued by the app itself;
    a federated one is a token issued (here: by the emulator) to the managed identity."""
    if header.get("x5t") or header.get("x5t#S256"):
        return True
    return claims.get("iss") == client_id


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorServer
    server_version = "devstack-identity"
    sys_version = ""

    # -- plumbing ---------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        # Only method, path without query and status: never tokens, secrets or forms.
        log.info("%s %s", self.command, urlsplit(self.path).path)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def _send(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        raw = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store, no-cache")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    def _body(self) -> bytes:
        return self._request_body

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    @property
    def st(self) -> EmulatorState:
        return self.server.state

    @property
    def tenant(self) -> str:
        return self.st.config.tenant_id

    def _bearer(self) -> str | None:
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    # -- dispatch ---------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        try:
            # Read every body, refused or not: an unread one would be parsed as the next
            # request on this kept-alive connection.
            self._request_body = self._read_body()
            if path.startswith("/_emulator/"):
                self._admin(path)
            elif path == "/msi/token":
                self._msi()
            elif path.startswith(("/secrets/", "/certificates/")):
                self._vault(path)
            elif (m := TENANT_RE.match(path)) is not None:
                self._entra(unquote(m.group(1)), m.group(2))
            else:
                self._send(404, {"error": {"code": "NotFound", "message": f"No route {path}"}})
        except Exception:
            log.exception("internal error for %s %s", self.command, path)
            self._send(500, {"error": {"code": "InternalError", "message": "emulator error"}})

    # -- Entra ID ---------------------------------------------------------------------
    def _aad_error(self, status: int, error: str, code: int, message: str) -> None:
        trace_id, correlation_id, stamp = str(uuid.uuid4()), str(uuid.uuid4()), _now_text()
        description = (
            f"AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} "
            f"Timestamp: {stamp}"
        )
        self._send(
            status,
            {
                "error": error,
                "error_description": description,
                "error_codes": [code],
                "timestamp": stamp,
                "trace_id": trace_id,
                "correlation_id": correlation_id,
                "error_uri": f"{self.server.base_url}/error?code={code}",
            },
        )

    def _entra(self, tenant: str, what: str) -> None:
        known = tenant.lower() in (self.tenant.lower(), "organizations", "common")
        if not known:
            self._aad_error(
                400, "invalid_request", 90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
                "ID and are signing into the correct cloud.",
            )
            return
        base = f"{self.server.base_url}/{self.tenant}"
        if what.startswith("v2.0/"):
            if self.command != "GET":
                self._send(405, None)
                return
            self._send(200, {
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
        elif what.startswith("discovery/"):
            self._send(200, {"keys": [self.server.key.jwk()]})
        else:
            if self.command != "POST":
                self._send(405, None)
                return
            self._token()

    def _token(self) -> None:
        self.st.count("token_requests")
        form = {k: v[0] for k, v in parse_qs(self._body().decode(errors="replace")).items()}
        cfg = self.st.config
        grant = form.get("grant_type", "")
        if grant != "client_credentials":
            self._aad_error(
                400, "unsupported_grant_type", 70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
            return
        client_id = form.get("client_id", "") or _assertion_client_id(form)
        secret = form.get("client_secret")
        basic = self.headers.get("Authorization", "")
        if basic.lower().startswith("basic "):
            decoded = base64.b64decode(basic[6:].strip()).decode(errors="replace")
            user, _, password = decoded.partition(":")
            client_id = client_id or unquote(user)
            secret = unquote(password)
        if not client_id:
            self._aad_error(
                400, "invalid_request", 900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
            return
        if client_id.lower() != cfg.client_id.lower():
            self._aad_error(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant}'. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. "
                "You may have sent your authentication request to the wrong tenant.",
            )
            return
        scope = form.get("scope", "").strip()
        scopes = scope.split()
        resource = scopes[0][: -len("/.default")] if len(scopes) == 1 else ""
        if not scopes:
            self._aad_error(
                400, "invalid_request", 90014,
                "The required field 'scope' is missing from the credential. Ensure that you "
                "have all the necessary parameters for the login request.",
            )
            return
        if not scopes[0].endswith("/.default") or resource.rstrip("/") not in KNOWN_RESOURCES:
            self._aad_error(
                400, "invalid_scope", 70011,
                f"The provided request must include a 'scope' input parameter. The provided "
                f"value for the input parameter 'scope' is not valid. The scope {scope} is not "
                "valid.",
            )
            return
        if not self._client_authenticated(form, secret, client_id):
            return
        resource = resource.rstrip("/")
        roles = list(self.st.app_roles) if resource == OUTLOOK_RESOURCE else None
        claims = app_claims(
            tenant=self.tenant, client_id=cfg.client_id, object_id=cfg.client_object_id,
            audience=resource, roles=roles,
        )
        self.st.count("token_issued")
        self._send(200, {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME - 1,
            "ext_expires_in": TOKEN_LIFETIME - 1,
            "access_token": self.server.key.sign(claims),
        })

    def _client_authenticated(
        self, form: dict[str, str], secret: str | None, client_id: str
    ) -> bool:
        assertion = form.get("client_assertion")
        if assertion is not None:
            if form.get("client_assertion_type") != JWT_BEARER:
                self._aad_error(
                    400, "invalid_request", 50027,
                    "JWT token is invalid or malformed: client_assertion_type is not supported.",
                )
                return False
            try:
                header = jwt.get_unverified_header(assertion)
                unverified = jwt.decode(assertion, options={"verify_signature": False})
            except jwt.InvalidTokenError:
                self._aad_error(400, "invalid_request", 50027, "JWT token is invalid or "
                                "malformed.")
                return False
            if _is_certificate_assertion(header, unverified, client_id):
                return self._check_certificate(assertion, header, unverified, client_id)
            return self._check_federated(form, assertion)
        if not secret:
            self._aad_error(
                401, "invalid_client", 7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the "
                "'client_credentials' grant type.",
            )
            return False
        now = int(time.time())
        with self.st.lock:
            matches = [s for s in self.st.client_secrets if hmac.compare_digest(
                s.value.encode(), secret.encode())]
        if not matches:
            self._aad_error(
                401, "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to "
                f"app '{client_id}'.",
            )
            return False
        if all(s.expires is not None and s.expires <= now for s in matches):
            self._aad_error(
                401, "invalid_client", 7000222,
                f"The provided client secret keys for app '{client_id}' are expired. Visit the "
                "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, "
                "or consider using certificate credentials for added security: "
                "https://aka.ms/certCreds.",
            )
            return False
        return True

    def _token_audiences(self) -> set[str]:
        """What a certificate assertion's ``aud`` may be: the token endpoint (v2 or v1) of
        the tenant, by ID or as named in the request path."""
        base = self.server.base_url
        tenants = {self.tenant, urlsplit(self.path).path.split("/")[1]}
        return {
            f"{base}/{t}/oauth2/{v}token" for t in tenants for v in ("v2.0/", "")
        }

    def _check_certificate(
        self, assertion: str, header: dict[str, Any], unverified: dict[str, Any],
        client_id: str,
    ) -> bool:
        """A client assertion signed with a certificate registered on the app."""
        alg = str(header.get("alg", ""))
        if alg not in ASSERTION_ALGORITHMS:
            self._aad_error(
                401, "invalid_client", 5002738,
                f"Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported "
                f"signing algorithms are: '{','.join(ASSERTION_ALGORITHMS)}'",
            )
            return False
        sha1 = sha256 = None
        shown = str(header.get("x5t#S256") or header.get("x5t") or "")
        try:
            if header.get("x5t#S256"):
                sha256 = b64url_decode(str(header["x5t#S256"]))
                shown = sha256.hex().upper()
            elif header.get("x5t"):
                sha1 = b64url_decode(str(header["x5t"]))
                shown = sha1.hex().upper()
        except (ValueError, TypeError):
            pass
        credential = self.st.find_key_credential(sha1=sha1, sha256=sha256)
        if credential is None:
            self._invalid_signature(
                "The key was not found.", shown,
                f"Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see "
                f"configured keys for app Id '{client_id}'.",
            )
            return False
        now = int(time.time())
        found = f"Found key 'Start={_us_time(credential.start)}, End={_us_time(credential.end)}'"
        if credential.end <= now:
            self._invalid_signature("The key used is expired.", shown, found)
            return False
        if credential.start > now:
            self._invalid_signature("The key used is not yet valid.", shown, found)
            return False
        public_key = load_certificate(credential.certificate_pem).public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            self._invalid_signature("Key was found, but use of the key to verify the "
                                    "signature failed.", shown, found)
            return False
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion, public_key, algorithms=[alg],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "verify_aud": False, "verify_iss": False},
            )
        except jwt.InvalidSignatureError:
            self._invalid_signature("The provided signature value did not match the expected "
                                    "signature value.", shown, found)
            return False
        except jwt.InvalidTokenError:
            self._aad_error(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
            return False
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            self._aad_error(
                401, "invalid_client", 700021,
                "Client assertion application identifier doesn't match 'client_id' parameter. "
                f"Review the documentation at {CERT_CREDENTIALS_DOC}.",
            )
            return False
        audiences = claims.get("aud")
        audience_list = audiences if isinstance(audiences, list) else [audiences]
        if not set(map(str, audience_list)) & self._token_audiences():
            self._aad_error(
                401, "invalid_client", 700023,
                "Client assertion audience claim does not match Realm issuer. Review the "
                f"documentation at {CERT_CREDENTIALS_DOC}.",
            )
            return False
        exp, nbf = _numeric_date(claims.get("exp")), _numeric_date(claims.get("nbf"))
        if exp is None or (nbf is None and "nbf" in claims):
            self._aad_error(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
            return False
        if exp + ASSERTION_CLOCK_SKEW <= now or (
            nbf is not None and nbf - ASSERTION_CLOCK_SKEW > now
        ):
            valid_from = f"assertion valid from {_iso(nbf)}, " if nbf is not None else ""
            self._aad_error(
                401, "invalid_client", 700024,
                f"Client assertion is not within its valid time range. Current time: "
                f"{_iso(now)}, {valid_from}expiry time of assertion {_iso(exp)}. Review the "
                f"documentation at {CERT_CREDENTIALS_DOC}.",
            )
            return False
        return True

    def _invalid_signature(self, reason: str, shown: str, detail: str) -> None:
        self._aad_error(
            401, "invalid_client", 700027,
            f"Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint "
            f"of key used by client: '{shown}', {detail}]",
        )

    def _check_federated(self, form: dict[str, str], assertion: str) -> bool:
        """Workload identity federation: the managed identity's token as client assertion."""
        try:
            claims = self.server.key.verify(
                assertion, audience=TOKEN_EXCHANGE_AUDIENCE, issuer=issuer_for(self.tenant)
            )
        except jwt.InvalidTokenError:
            self._aad_error(
                401, "invalid_client", 700211,
                "No matching federated identity record found for presented assertion issuer.",
            )
            return False
        if claims.get("sub") != self.st.config.managed_identity_object_id:
            self._aad_error(
                401, "invalid_client", 70021,
                "No matching federated identity record found for presented assertion.",
            )
            return False
        return True

    # -- managed identity -------------------------------------------------------------
    def _msi(self) -> None:
        self.st.count("msi_requests")
        cfg = self.st.config
        header = self.headers.get("X-IDENTITY-HEADER")
        if header is None:
            self._send(400, {"statusCode": 400, "message": "X-IDENTITY-HEADER is required."})
            return
        if not hmac.compare_digest(header.encode(), cfg.identity_header.encode()):
            self._send(401, {"statusCode": 401, "message": "Unauthorized."})
            return
        query = self._query()
        resource = query.get("resource", "")
        if not resource or "api-version" not in query:
            self._send(400, {"statusCode": 400, "message": "resource and api-version are required."})
            return
        client_id = query.get("client_id")
        principal = query.get("principal_id") or query.get("object_id")
        if (client_id and client_id.lower() != cfg.managed_identity_client_id.lower()) or (
            principal and principal.lower() != cfg.managed_identity_object_id.lower()
        ) or query.get("mi_res_id"):
            self._send(400, {
                "statusCode": 400,
                "message": "No managed identity found for specified ClientId/ResourceId/"
                "PrincipalId.",
            })
            return
        audience = resource[: -len("/.default")] if resource.endswith("/.default") else resource
        audience = audience.rstrip("/") if audience != TOKEN_EXCHANGE_AUDIENCE else audience
        claims = app_claims(
            tenant=self.tenant, client_id=cfg.managed_identity_client_id,
            object_id=cfg.managed_identity_object_id, audience=audience, roles=None,
        )
        self.st.count("token_issued")
        self._send(200, {
            "access_token": self.server.key.sign(claims),
            "expires_on": str(claims["exp"]),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": cfg.managed_identity_client_id,
        })

    # -- Key Vault --------------------------------------------------------------------
    def _kv_error(self, status: int, code: str, message: str, challenge: bool = False) -> None:
        headers: dict[str, str] = {}
        if challenge:
            headers["WWW-Authenticate"] = (
                f'Bearer authorization="{self.server.base_url}/{self.tenant}", '
                f'resource="{VAULT_RESOURCE}"'
            )
        self._send(status, {"error": {"code": code, "message": message}}, headers)

    def _vault(self, path: str) -> None:
        self.st.count("vault_requests")
        if self.command != "GET":
            self._kv_error(405, "MethodNotAllowed", f"{self.command} is not supported here.")
            return
        match = VAULT_RE.match(path)
        if match is None:
            kind = "certificate" if path.startswith("/certificates/") else "secret"
            self._kv_error(400, "BadParameter", f"The {kind} name is not valid.")
            return
        self._body()
        if "api-version" not in self._query():
            self._kv_error(400, "BadParameter", "The request URI contains an invalid api-version.")
            return
        token = self._bearer()
        if token is None:
            self._kv_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP "
                           "token.", challenge=True)
            return
        try:
            claims = self.server.key.verify(token, audience=VAULT_RESOURCE,
                                            issuer=issuer_for(self.tenant))
        except jwt.InvalidAudienceError:
            aud = jwt.decode(token, options={"verify_signature": False}).get("aud")
            self._kv_error(401, "Unauthorized", f"AKV10022: Invalid audience. Expected "
                           f"{VAULT_RESOURCE}, found: {aud}.", challenge=True)
            return
        except jwt.ExpiredSignatureError:
            self._kv_error(401, "Unauthorized", "AKV10013: Token has expired.", challenge=True)
            return
        except jwt.InvalidTokenError:
            self._kv_error(401, "Unauthorized", "AKV10032: Invalid token signature.",
                           challenge=True)
            return
        oid = str(claims.get("oid", ""))
        # The readers hold a role that reads secrets and certificates ("Key Vault
        # Certificate User" covers both; "Key Vault Secrets User" the secrets only).
        with self.st.lock:
            allowed = oid in self.st.vault_readers
        kind, name, version = match.group(1), match.group(2), match.group(3) or None
        if not allowed:
            action = ("secrets/getSecret/action" if kind == "secrets"
                      else "certificates/read")
            self._send(403, {"error": {
                "code": "Forbidden",
                "message": f"Caller is not authorized to perform action on resource.\r\n"
                f"If role assignments, deny assignments or role definitions were changed "
                f"recently, please observe propagation time.\r\nCaller: appid="
                f"{claims.get('appid')};oid={oid};iss={claims.get('iss')}\r\nAction: "
                f"'Microsoft.KeyVault/vaults/{action}'\r\nResource: "
                f"'/{kind}/{name.lower()}'\r\nAssignment: (not found)\r\n",
                "innererror": {"code": "ForbiddenByRbac"},
            }})
            return
        if kind == "certificates":
            self._send_certificate(name, version)
            return
        item = self.st.get_secret(name, version)
        if item is None:
            self._kv_error(404, "SecretNotFound", KV_NOT_FOUND.format(name=name))
            return
        if not item.enabled:
            self._kv_error(403, "Forbidden", "Operation get is not allowed on a disabled secret.")
            return
        self._send(200, self._secret_bundle(name, item))

    def _secret_bundle(self, name: str, item: SecretVersion) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "enabled": item.enabled,
            "created": item.created,
            "updated": item.updated,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }
        if item.not_before is not None:
            attributes["nbf"] = item.not_before
        if item.expires is not None:
            attributes["exp"] = item.expires
        body: dict[str, Any] = {
            "value": item.value,
            "id": f"{self.server.base_url}/secrets/{name}/{item.version}",
            "attributes": attributes,
            "tags": {},
        }
        if item.content_type:
            body["contentType"] = item.content_type
        if item.managed:
            body["kid"] = f"{self.server.base_url}/keys/{name}/{item.version}"
            body["managed"] = True
        return body

    def _send_certificate(self, name: str, version: str | None) -> None:
        cert = self.st.get_certificate(name, version)
        if cert is None:
            self._kv_error(404, "CertificateNotFound", KV_NOT_FOUND.format(name=name).replace(
                "A secret", "A certificate").replace("this secret", "this certificate"))
            return
        self._send(200, self._certificate_bundle(name, cert))

    def _certificate_bundle(self, name: str, cert: VaultCertificate) -> dict[str, Any]:
        base = self.server.base_url
        attributes = {
            "enabled": True,
            "nbf": cert.not_before,
            "exp": cert.expires,
            "created": cert.created,
            "updated": cert.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }
        return {
            "id": f"{base}/certificates/{name}/{cert.version}",
            "kid": f"{base}/keys/{name}/{cert.version}",
            "sid": f"{base}/secrets/{name}/{cert.version}",
            "x5t": b64url(cert.x5t),
            "cer": base64.b64encode(cert.cer).decode(),
            "contentType": cert.content_type,
            "attributes": attributes,
            "policy": {
                "id": f"{base}/certificates/{name}/policy",
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

    # -- admin ------------------------------------------------------------------------
    def _admin(self, path: str) -> None:
        key = self.headers.get("X-Emulator-Key", "")
        if not hmac.compare_digest(key.encode(), self.st.config.admin_key.encode()):
            self._send(401, {"error": "admin key required"})
            return
        raw = self._body()
        data: dict[str, Any] = json.loads(raw) if raw else {}
        st = self.st
        if path == "/_emulator/stats":
            with st.lock:
                counters = dict(st.counters)
            self._send(200, counters)
        elif path == "/_emulator/stats/reset" and self.command == "POST":
            with st.lock:
                st.counters = dict.fromkeys(st.counters, 0)
            self._send(200, {})
        elif path == "/_emulator/client-secret" and self.command == "POST":
            new = st.rotate_client_secret(data.get("secret"), bool(data.get("keep_old")))
            self._send(200, {"secret": new})
        elif path == "/_emulator/client-secret/expire" and self.command == "POST":
            st.expire_client_secrets()
            self._send(200, {})
        elif path == "/_emulator/app-roles" and self.command == "POST":
            with st.lock:
                st.app_roles = [str(r) for r in data.get("roles", [])]
            self._send(200, {"roles": st.app_roles})
        elif path == "/_emulator/vault-readers" and self.command == "POST":
            with st.lock:
                if data.get("granted", True):
                    st.vault_readers.add(str(data["object_id"]))
                else:
                    st.vault_readers.discard(str(data["object_id"]))
            self._send(200, {})
        elif path.startswith("/_emulator/secrets/") and self.command == "PUT":
            name = path.rsplit("/", 1)[1]
            item = st.set_secret(
                name, str(data["value"]), expires=data.get("expires"),
                enabled=bool(data.get("enabled", True)), content_type=data.get("content_type"),
            )
            self._send(200, {"version": item.version})
        elif path.startswith("/_emulator/certificates/") and self.command == "PUT":
            name = path.rsplit("/", 1)[1]
            cert = st.set_certificate(
                name, str(data["certificate_pem"]), str(data["value"]),
                str(data["content_type"]),
            )
            self._send(200, {"version": cert.version})
        elif path == "/_emulator/app-certificates" and self.command == "POST":
            credential = st.register_key_credential(str(data["certificate_pem"]))
            self._send(200, _key_credential_json(credential))
        elif path == "/_emulator/app-certificates" and self.command == "GET":
            with st.lock:
                credentials = list(st.key_credentials)
            self._send(200, [_key_credential_json(k) for k in credentials])
        elif path == "/_emulator/app-certificates/clear" and self.command == "POST":
            st.clear_key_credentials()
            self._send(200, {})
        else:
            self._send(404, {"error": f"no admin route {self.command} {path}"})


def _key_credential_json(credential: KeyCredential) -> dict[str, Any]:
    return {
        "thumbprint_sha1": credential.sha1.hex().upper(),
        "thumbprint_sha256": credential.sha256.hex().upper(),
        "start": credential.start,
        "end": credential.end,
    }
