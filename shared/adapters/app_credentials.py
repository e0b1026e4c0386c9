"""The three ways the app proves itself to Entra ID, as MSAL ``client_credential`` values.

- secret: a client secret read from Key Vault;
- certificate: a certificate in Key Vault, its private key read through the secret of the
  same name (PKCS#12 or PEM, as Key Vault stores certificates);
- federated: no secret at all; the user-assigned managed identity's token for
  ``api://AzureADTokenExchange`` is the client assertion.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.identity import CredentialUnavailableError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from shared.diagnoses import hint
from shared.errors import CredentialError, FailureKind
from shared.model import CredentialFacts, VaultSecret
from shared.ports import SecretReader

PKCS12 = "application/x-pkcs12"


class _VaultBacked:
    """Reads one Key Vault secret once per process, again on ``refresh``."""

    def __init__(self, vault: SecretReader, name: str, setting: str) -> None:
        self._vault = vault
        self._name = name
        self._setting = setting
        self._lock = threading.Lock()
        self._cached: VaultSecret | None = None

    def _secret(self) -> VaultSecret:
        with self._lock:
            if self._cached is None:
                self._cached = self._vault.read(self._name, setting=self._setting)
            return self._cached

    def refresh(self) -> bool:
        with self._lock:
            self._cached = self._vault.read(self._name, setting=self._setting)
            return True


class SecretCredential(_VaultBacked):
    """A client secret stored in Key Vault."""

    def __init__(self, vault: SecretReader, name: str) -> None:
        super().__init__(vault, name, "CLIENT_SECRET_NAME")

    def get(self) -> str:
        return self._secret().value.reveal()

    def facts(self) -> CredentialFacts:
        secret = self._secret()
        return CredentialFacts("client secret", f"{self._vault.vault_url} secret '{self._name}'",
                               secret.expires_on)


@dataclass(frozen=True)
class ClientCertificate:
    """A certificate with its private key, as MSAL takes it."""

    private_key_pem: str
    certificate_pem: str
    thumbprint: str
    not_after: datetime

    def msal_credential(self, *, send_chain: bool) -> dict[str, Any]:
        credential: dict[str, Any] = {"private_key": self.private_key_pem,
                                      "thumbprint": self.thumbprint}
        if send_chain:
            # Subject name and issuer authentication: the chain goes with each assertion.
            credential["public_certificate"] = self.certificate_pem
        return credential


def load_client_certificate(value: str, content_type: str | None, *, name: str) -> ClientCertificate:
    """Parse a Key Vault certificate's secret: base64 PKCS#12, or PEM key and certificate."""
    try:
        if content_type == PKCS12 or "-----BEGIN" not in value:
            key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
        else:
            data = value.encode()
            key = serialization.load_pem_private_key(data, None)
            cert = x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise CredentialError(
            f"Key Vault secret '{name}' is not a certificate with its private key (PKCS#12 or PEM). "
            f"{hint(FailureKind.CERTIFICATE_FORMAT)}", kind=FailureKind.CERTIFICATE_FORMAT) from e
    if key is None or cert is None:
        raise CredentialError(f"Key Vault secret '{name}' holds no private key and certificate pair. "
                              f"{hint(FailureKind.CERTIFICATE_FORMAT)}", kind=FailureKind.CERTIFICATE_FORMAT)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return ClientCertificate(
        private_key_pem=key_pem,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 (Entra's x5t is SHA-1)
        not_after=cert.not_valid_after_utc,
    )


class CertificateCredential(_VaultBacked):
    """A certificate stored in Key Vault; MSAL signs the client assertion with it."""

    def __init__(self, vault: SecretReader, name: str, *, send_chain: bool = False) -> None:
        super().__init__(vault, name, "CLIENT_CERTIFICATE_NAME")
        self._send_chain = send_chain

    def certificate(self) -> ClientCertificate:
        secret = self._secret()
        return load_client_certificate(secret.value.reveal(), secret.content_type, name=self._name)

    def get(self) -> dict[str, Any]:
        return self.certificate().msal_credential(send_chain=self._send_chain)

    def facts(self) -> CredentialFacts:
        cert = self.certificate()
        return CredentialFacts("certificate", f"{self._vault.vault_url} certificate '{self._name}'",
                               cert.not_after, cert.thumbprint)


class FederatedCredential:
    """The managed identity's token as client assertion: no secret to store or rotate."""

    def __init__(self, identity: TokenCredential, audience: str, identity_client_id: str) -> None:
        self._identity = identity
        self._scope = f"{audience.rstrip('/')}/.default"
        self._client_id = identity_client_id

    def assertion(self) -> str:
        """A fresh managed-identity token for the token-exchange audience."""
        try:
            return self._identity.get_token(self._scope).token
        except CredentialUnavailableError as e:
            raise CredentialError(
                f"No managed identity is available to get the federated assertion ({e.message}). "
                f"{hint(FailureKind.NO_IDENTITY)}", kind=FailureKind.NO_IDENTITY) from e
        except AzureError as e:
            raise CredentialError(
                f"The managed identity {self._client_id} could not get a token for {self._scope}: "
                f"{str(e).splitlines()[0][:300]}. {hint(FailureKind.NO_IDENTITY)}",
                kind=FailureKind.NO_IDENTITY) from e

    def get(self) -> dict[str, Callable[[], str]]:
        return {"client_assertion": self.assertion}

    def refresh(self) -> bool:
        return False

    def facts(self) -> CredentialFacts:
        return CredentialFacts("federated managed identity",
                               f"managed identity {self._client_id}, audience {self._scope}")
