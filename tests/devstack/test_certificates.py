"""Certificate client credentials on the token endpoint, and certificates in Key Vault, against
the real clients (MSAL, azure-keyvault-secrets, azure-keyvault-certificates)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import msal
import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from devstack.stack import TOKEN_SCOPE, Stack
from tests.devstack.client_assertions import certificate_assertion


@pytest.fixture(autouse=True)
def _clean(stack: Stack) -> Iterator[None]:
    from azure.keyvault.secrets._shared import HttpChallengeCache

    HttpChallengeCache.clear()
    yield
    stack.unregister_app_certificates()


def _name() -> str:
    return f"cert-{uuid.uuid4().hex[:10]}"


def _app(
    stack: Stack, http: requests.Session, credential: dict[str, Any]
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        stack.client_id,
        client_credential=credential,
        authority=stack.authority,
        instance_discovery=False,
        http_client=http,
    )


def _token(stack: Stack, http: requests.Session, credential: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _app(stack, http, credential).acquire_token_for_client(
        [TOKEN_SCOPE]
    )
    return result


def _asserting(assertion: str) -> dict[str, Any]:
    """A ready-made client assertion for MSAL (as a callable, which MSAL prefers)."""
    return {"client_assertion": lambda: assertion}


def _error(result: dict[str, Any], code: int) -> str:
    assert result.get("error") == "invalid_client", result
    assert result["error_codes"] == [code]
    description: str = result["error_description"]
    assert description.startswith(f"AADSTS{code}: ")
    return description


# -- Entra ID: certificate credentials ---------------------------------------------------
def test_thumbprint_credential_gets_token(stack: Stack, http: requests.Session) -> None:
    cert = stack.create_app_certificate(name=_name())
    assert len(cert.thumbprint_sha1) == 40
    assert cert.not_after > dt.datetime.now(dt.UTC) + dt.timedelta(days=364)
    result = _token(stack, http, {"private_key": cert.private_key_pem,
                                  "thumbprint": cert.thumbprint_sha1})
    assert result.get("token_source") == "identity_provider", result.get("error_description")
    claims = jwt.decode(result["access_token"], stack.public_key_pem(), algorithms=["RS256"],
                        audience="https://outlook.office365.com")
    assert claims["appid"] == stack.client_id
    assert claims["roles"] == ["IMAP.AccessAsApp", "POP.AccessAsApp"]
    # The portal shows upper-case thumbprints; MSAL takes either case.
    lower = _token(stack, http, {"private_key": cert.private_key_pem,
                                 "thumbprint": cert.thumbprint_sha1.lower()})
    assert "access_token" in lower, lower.get("error_description")


def test_public_certificate_forms_get_tokens(stack: Stack, http: requests.Session) -> None:
    cert = stack.create_app_certificate(name=_name(), pem=True)
    # With a thumbprint: RS256, x5t and x5c.
    with_thumbprint = _token(stack, http, cert.msal_credential(send_certificate=True))
    assert "access_token" in with_thumbprint, with_thumbprint.get("error_description")
    # Without: PS256, x5t#S256 and x5c (subject name/issuer auth).
    sni = _token(stack, http, {"private_key": cert.private_key_pem,
                               "public_certificate": cert.certificate_pem})
    assert "access_token" in sni, sni.get("error_description")
    assert {c["thumbprint_sha256"] for c in stack.app_certificates()} == {
        cert.thumbprint_sha256
    }


def test_unregistered_certificate_is_rejected(stack: Stack, http: requests.Session) -> None:
    cert = stack.create_app_certificate(name=_name(), register=False)
    result = _token(stack, http, cert.msal_credential())
    description = _error(result, 700027)
    assert "Client assertion contains an invalid signature." in description
    assert "[Reason - The key was not found., " in description
    assert f"Thumbprint of key used by client: '{cert.thumbprint_sha1}'" in description

    registered = stack.create_app_certificate(name=_name())
    assert "access_token" in _token(stack, http, registered.msal_credential())
    stack.unregister_app_certificates()
    assert stack.app_certificates() == []
    _error(_token(stack, http, registered.msal_credential()), 700027)


def test_expired_and_wrong_key_get_700027(stack: Stack, http: requests.Session) -> None:
    expired = stack.create_app_certificate(name=_name(), expired=True, days_valid=30)
    assert expired.not_after < dt.datetime.now(dt.UTC)
    description = _error(_token(stack, http, expired.msal_credential()), 700027)
    assert "[Reason - The key used is expired., " in description
    assert "Found key 'Start=" in description

    cert = stack.create_app_certificate(name=_name())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = certificate_assertion(stack, cert, key=other)
    description = _error(_token(stack, http, _asserting(forged)), 700027)
    assert "did not match the expected signature value" in description


def test_assertion_claims_are_checked(stack: Stack, http: requests.Session) -> None:
    cert = stack.create_app_certificate(name=_name())
    good = certificate_assertion(stack, cert)
    assert "access_token" in _token(stack, http, _asserting(good))

    now = int(time.time())
    stale = certificate_assertion(stack, cert, iat=now - 3600, exp=now - 600)
    description = _error(_token(stack, http, _asserting(stale)), 700024)
    assert "Client assertion is not within its valid time range." in description
    early = certificate_assertion(stack, cert, nbf=now + 1800, exp=now + 2400)
    _error(_token(stack, http, _asserting(early)), 700024)

    audience = certificate_assertion(
        stack, cert, aud="https://login.microsoftonline.com/x/oauth2/token"
    )
    _error(_token(stack, http, _asserting(audience)), 700023)
    subject = certificate_assertion(stack, cert, sub=str(uuid.uuid4()))
    _error(_token(stack, http, _asserting(subject)), 700021)


def test_federated_assertion_still_works(stack: Stack, http: requests.Session) -> None:
    reply = http.get(
        stack.identity_endpoint,
        params={"api-version": "2019-08-01", "resource": "api://AzureADTokenExchange"},
        headers={"X-IDENTITY-HEADER": stack.identity_header},
    )
    assert reply.status_code == 200
    federated = reply.json()["access_token"]
    result = _token(stack, http, _asserting(federated))
    assert "access_token" in result, result.get("error_description")
    # A token for another audience is not a federated credential.
    reply = http.get(
        stack.identity_endpoint,
        params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
        headers={"X-IDENTITY-HEADER": stack.identity_header},
    )
    wrong = _token(stack, http, _asserting(reply.json()["access_token"]))
    assert wrong["error_codes"] == [700211]


# -- Key Vault ----------------------------------------------------------------------------
def _secret_client(stack: Stack) -> tuple[ManagedIdentityCredential, SecretClient]:
    bundle = str(stack.ca_bundle)
    credential = ManagedIdentityCredential(connection_verify=bundle)
    client = SecretClient(vault_url=stack.vault_url, credential=credential,
                          verify_challenge_resource=False, connection_verify=bundle)
    return credential, client


@pytest.mark.usefixtures("managed_identity_env")
def test_certificate_secret_holds_pkcs12_or_pem(stack: Stack, http: requests.Session) -> None:
    pfx_cert = stack.create_app_certificate(name=_name())
    pem_cert = stack.create_app_certificate(name=_name(), pem=True)
    credential, client = _secret_client(stack)
    with credential, client:
        secret = client.get_secret(pfx_cert.name)
        assert secret.properties.content_type == "application/x-pkcs12"
        assert secret.value is not None
        key, certificate, extra = pkcs12.load_key_and_certificates(
            base64.b64decode(secret.value), None
        )
        assert isinstance(key, rsa.RSAPrivateKey) and extra == []
        assert certificate is not None
        assert certificate.fingerprint(hashes.SHA1()).hex().upper() == (  # noqa: S303
            pfx_cert.thumbprint_sha1
        )
        assert secret.properties.managed is True
        assert secret.properties.key_id is not None
        assert secret.properties.expires_on == pfx_cert.not_after
        assert secret.properties.not_before == pfx_cert.not_before

        pem = client.get_secret(pem_cert.name)
        assert pem.properties.content_type == "application/x-pem-file"
        assert pem.value is not None
        assert serialization.load_pem_private_key(pem.value.encode(), None) is not None
        assert x509.load_pem_x509_certificate(pem.value.encode()).fingerprint(
            hashes.SHA256()
        ).hex().upper() == pem_cert.thumbprint_sha256

        # What the app reads from the vault is enough for MSAL.
        parsed_key = serialization.load_pem_private_key(pem.value.encode(), None)
        key_pem = parsed_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        result = _token(stack, http, {"private_key": key_pem,
                                      "thumbprint": pem_cert.thumbprint_sha1})
        assert "access_token" in result, result.get("error_description")


@pytest.mark.usefixtures("managed_identity_env")
def test_secret_expiry_and_content_type_come_back(stack: Stack) -> None:
    name = _name()
    expires = int(time.time()) + 86_400 * 30
    stack.set_vault_secret(name, "s3cret", expires=expires, content_type="text/plain")
    credential, client = _secret_client(stack)
    with credential, client:
        secret = client.get_secret(name)
        assert secret.value == "s3cret"
        assert secret.properties.content_type == "text/plain"
        assert secret.properties.expires_on == dt.datetime.fromtimestamp(expires, dt.UTC)
        assert secret.properties.managed is None

        stack.set_vault_secret(name, "plain")
        latest = client.get_secret(name)
        assert latest.properties.expires_on is None
        assert latest.properties.content_type is None


@pytest.mark.usefixtures("managed_identity_env")
def test_certificate_client_gets_certificate(stack: Stack) -> None:
    from azure.keyvault import certificates
    from azure.keyvault.certificates._shared import HttpChallengeCache

    HttpChallengeCache.clear()
    cert = stack.create_app_certificate(name=_name())
    bundle = str(stack.ca_bundle)
    with (
        ManagedIdentityCredential(connection_verify=bundle) as credential,
        certificates.CertificateClient(
            vault_url=stack.vault_url, credential=credential,
            verify_challenge_resource=False, connection_verify=bundle,
        ) as client,
    ):
        got = client.get_certificate(cert.name)
        der = cert.certificate.public_bytes(serialization.Encoding.DER)
        assert got.cer is not None and bytes(got.cer) == der
        assert got.properties is not None
        assert got.properties.x509_thumbprint == binascii.unhexlify(cert.thumbprint_sha1)
        assert got.properties.expires_on == cert.not_after
        assert got.properties.not_before == cert.not_before
        assert got.secret_id is not None
        assert got.secret_id.startswith(f"{stack.vault_url}secrets/{cert.name}/")
        version = got.properties.version
        assert version is not None
        assert got.secret_id.endswith(version)
        again = client.get_certificate_version(cert.name, version)
        assert again.id == got.id
        with pytest.raises(Exception, match="CertificateNotFound"):
            client.get_certificate("no-such-certificate")
