"""Signing keys and Entra-style access tokens (RS256 JWTs)."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

OUTLOOK_RESOURCE = "https://outlook.office365.com"
VAULT_RESOURCE = "https://vault.azure.net"
APP_ROLES = ("IMAP.AccessAsApp", "POP.AccessAsApp")
# A client-credentials scope names a resource and asks for all its granted permissions.
DEFAULT_SCOPE_SUFFIX = "/.default"
TOKEN_LIFETIME = 3600
# Entra dates iat and nbf five minutes back to allow for clock skew. Dovecot checks them
# against time(2), which can lag the clock Python reads by a tick: without the margin a
# token issued in the same second could be refused as "issued in future".
BACKDATED_SECONDS = 300


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class SigningKey:
    """An RSA key pair with a stable ``kid`` (derived from the public key)."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        der = self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashlib.sha1(der, usedforsecurity=False).digest()
        self.kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError(f"{path} does not hold an RSA private key")
        return cls(key)

    def save(self, path: Path) -> None:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        numbers = self.public_key.public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        headers = {"typ": "JWT", "kid": kid if kid is not None else self.kid}
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)

    def verify(self, token: str, audience: str, issuer: str) -> dict[str, Any]:
        """Decode ``token``; raises ``jwt.InvalidTokenError`` when it is not valid."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self.public_key,
            algorithms=["RS256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "nbf", "aud", "iss", "sub"]},
        )
        return claims


def issuer_for(tenant: str) -> str:
    return f"https://sts.windows.net/{tenant}/"


def app_claims(
    *,
    tenant: str,
    client_id: str,
    object_id: str,
    audience: str,
    roles: list[str] | None,
    now: int | None = None,
    lifetime: int = TOKEN_LIFETIME,
) -> dict[str, Any]:
    """Claims of an app-only (client-credentials or managed identity) v1 access token."""
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": issuer_for(tenant),
        "iat": issued - BACKDATED_SECONDS,
        "nbf": issued - BACKDATED_SECONDS,
        "exp": issued + lifetime,
        "aio": uuid.uuid4().hex,
        "app_displayname": "mailferry",
        "appid": client_id,
        "appidacr": "1",
        "idp": issuer_for(tenant),
        "idtyp": "app",
        "oid": object_id,
        "sub": object_id,
        "tid": tenant,
        "uti": uuid.uuid4().hex[:22],
        "ver": "1.0",
    }
    if roles:
        claims["roles"] = list(roles)
    return claims
