"""Client assertions as an app signs them with its certificate (``private_key_jwt``)."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Any

import jwt

from devstack.identity.certs import AppCertificate
from devstack.stack import Stack

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def certificate_assertion(
    stack: Stack, cert: AppCertificate, *, key: Any = None, algorithm: str = "RS256",
    **overrides: Any,
) -> str:
    """An assertion naming ``cert`` by ``x5t`` (padded, as MSAL sends it), signed with its
    key (or ``key``); ``overrides`` replace claims, None removes one."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": f"{stack.authority}/oauth2/v2.0/token",
        "iss": stack.client_id,
        "sub": stack.client_id,
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    claims = {name: value for name, value in claims.items() if value is not None}
    x5t = base64.urlsafe_b64encode(binascii.unhexlify(cert.thumbprint_sha1)).decode()
    signer = cert.private_key() if key is None else key
    return jwt.encode(claims, signer, algorithm=algorithm, headers={"x5t": x5t})
