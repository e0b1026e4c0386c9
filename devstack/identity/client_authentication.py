"""How the token endpoint knows the app: a client secret, a client assertion signed with a
certificate registered on the app, or a federated one (the managed identity's token).
Each check raises :class:`EntraError` with the AADSTS code Entra gives."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.identity.aadsts import EntraError, invalid_client, malformed_assertion
from devstack.identity.certs import b64url_decode, load_certificate
from devstack.identity.endpoint import Emulator, Request
from devstack.identity.state import KeyCredential
from devstack.identity.tokens import issuer_for

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Signature algorithms Entra accepts on a certificate client assertion.
ASSERTION_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
# Clock skew allowed on the assertion's exp/nbf (Microsoft.IdentityModel's default).
ASSERTION_CLOCK_SKEW = 300
CERT_CREDENTIALS_DOC = "https://learn.microsoft.com/entra/identity-platform/certificate-credentials"


def _us_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%m/%d/%Y %H:%M:%S")


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _numeric_date(value: Any) -> int | None:
    """A JWT NumericDate (MSAL sends floats) as whole seconds; None if not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def assertion_client_id(form: dict[str, str]) -> str:
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


def authenticate_client(
    emulator: Emulator, request: Request, form: dict[str, str], secret: str | None,
    client_id: str,
) -> None:
    """Accept the request's client credential or raise the refusal Entra would give."""
    assertion = form.get("client_assertion")
    if assertion is None:
        _check_secret(emulator, secret, client_id)
        return
    if form.get("client_assertion_type") != JWT_BEARER:
        raise malformed_assertion(": client_assertion_type is not supported")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError as e:
        raise malformed_assertion() from e
    # A certificate assertion names its key by thumbprint and is issued by the app itself;
    # a federated one is a token issued (here: by the emulator) to the managed identity.
    if header.get("x5t") or header.get("x5t#S256") or unverified.get("iss") == client_id:
        _check_certificate_assertion(emulator, request, assertion, header, client_id)
    else:
        _check_federated_assertion(emulator, assertion)


def _check_secret(emulator: Emulator, secret: str | None, client_id: str) -> None:
    if not secret:
        raise invalid_client(
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the "
            "'client_credentials' grant type.",
        )
    matches = emulator.state.matching_client_secrets(secret)
    if not matches:
        raise invalid_client(
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request "
            "is the client secret value, not the client secret ID, for a secret added to "
            f"app '{client_id}'.",
        )
    now = int(time.time())
    if all(s.expires is not None and s.expires <= now for s in matches):
        raise invalid_client(
            7000222,
            f"The provided client secret keys for app '{client_id}' are expired. Visit the "
            "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, "
            "or consider using certificate credentials for added security: "
            "https://aka.ms/certCreds.",
        )


def _invalid_signature(reason: str, shown: str, detail: str) -> EntraError:
    return invalid_client(
        700027,
        f"Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint "
        f"of key used by client: '{shown}', {detail}]",
    )


def _registered_credential(
    emulator: Emulator, header: dict[str, Any], client_id: str
) -> tuple[KeyCredential, str]:
    """The app's certificate the header names by thumbprint, and that thumbprint as shown."""
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
    credential = emulator.state.find_key_credential(sha1=sha1, sha256=sha256)
    if credential is None:
        raise _invalid_signature(
            "The key was not found.", shown,
            f"Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see "
            f"configured keys for app Id '{client_id}'.",
        )
    return credential, shown


def _token_audiences(emulator: Emulator, request: Request) -> set[str]:
    """What a certificate assertion's ``aud`` may be: the token endpoint (v2 or v1) of
    the tenant, by ID or as named in the request path."""
    tenants = {emulator.tenant, request.path.split("/")[1]}
    return {
        f"{emulator.base_url}/{t}/oauth2/{v}token" for t in tenants for v in ("v2.0/", "")
    }


def _check_certificate_assertion(
    emulator: Emulator, request: Request, assertion: str, header: dict[str, Any],
    client_id: str,
) -> None:
    """A client assertion signed with a certificate registered on the app."""
    alg = str(header.get("alg", ""))
    if alg not in ASSERTION_ALGORITHMS:
        raise invalid_client(
            5002738,
            f"Invalid JWT token. '{alg}' is not a supported signature algorithm. Supported "
            f"signing algorithms are: '{','.join(ASSERTION_ALGORITHMS)}'",
        )
    credential, shown = _registered_credential(emulator, header, client_id)
    now = int(time.time())
    found = f"Found key 'Start={_us_time(credential.start)}, End={_us_time(credential.end)}'"
    if credential.end <= now:
        raise _invalid_signature("The key used is expired.", shown, found)
    if credential.start > now:
        raise _invalid_signature("The key used is not yet valid.", shown, found)
    public_key = load_certificate(credential.certificate_pem).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise _invalid_signature("Key was found, but use of the key to verify the "
                                 "signature failed.", shown, found)
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion, public_key, algorithms=[alg],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "verify_aud": False, "verify_iss": False},
        )
    except jwt.InvalidSignatureError as e:
        raise _invalid_signature("The provided signature value did not match the expected "
                                 "signature value.", shown, found) from e
    except jwt.InvalidTokenError as e:
        raise malformed_assertion() from e
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise invalid_client(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. "
            f"Review the documentation at {CERT_CREDENTIALS_DOC}.",
        )
    audiences = claims.get("aud")
    audience_list = audiences if isinstance(audiences, list) else [audiences]
    if not set(map(str, audience_list)) & _token_audiences(emulator, request):
        raise invalid_client(
            700023,
            "Client assertion audience claim does not match Realm issuer. Review the "
            f"documentation at {CERT_CREDENTIALS_DOC}.",
        )
    _check_time_range(claims, now)


def _check_time_range(claims: dict[str, Any], now: int) -> None:
    exp, nbf = _numeric_date(claims.get("exp")), _numeric_date(claims.get("nbf"))
    if exp is None or (nbf is None and "nbf" in claims):
        raise malformed_assertion()
    if exp + ASSERTION_CLOCK_SKEW <= now or (
        nbf is not None and nbf - ASSERTION_CLOCK_SKEW > now
    ):
        valid_from = f"assertion valid from {_iso(nbf)}, " if nbf is not None else ""
        raise invalid_client(
            700024,
            f"Client assertion is not within its valid time range. Current time: "
            f"{_iso(now)}, {valid_from}expiry time of assertion {_iso(exp)}. Review the "
            f"documentation at {CERT_CREDENTIALS_DOC}.",
        )


def _check_federated_assertion(emulator: Emulator, assertion: str) -> None:
    """Workload identity federation: the managed identity's token as client assertion."""
    try:
        claims = emulator.key.verify(
            assertion, audience=TOKEN_EXCHANGE_AUDIENCE, issuer=issuer_for(emulator.tenant)
        )
    except jwt.InvalidTokenError as e:
        raise invalid_client(
            700211,
            "No matching federated identity record found for presented assertion issuer.",
        ) from e
    if claims.get("sub") != emulator.state.config.managed_identity_object_id:
        raise invalid_client(
            70021, "No matching federated identity record found for presented assertion."
        )
