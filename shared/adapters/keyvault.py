"""Reads the app's credential material from Key Vault with the Function App's identity."""

from __future__ import annotations

from pathlib import Path

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.secrets import SecretClient

from shared.adapters.tls import sdk_transport_options
from shared.diagnoses import Ids, hint
from shared.errors import CredentialError, FailureKind
from shared.model import Secret, VaultSecret


class KeyVault:
    """Key Vault secrets through ``SecretClient``; every failure says what to fix."""

    def __init__(self, vault_url: str, credential: TokenCredential, *,
                 verify_challenge_resource: bool = True, ca_bundle: Path | None = None) -> None:
        self.vault_url = vault_url
        self._client = SecretClient(
            vault_url=vault_url,
            credential=credential,
            verify_challenge_resource=verify_challenge_resource,
            connection_verify=str(ca_bundle) if ca_bundle else True,
            **sdk_transport_options(str(ca_bundle) if ca_bundle else True),
        )

    def read(self, name: str, *, setting: str = "CLIENT_SECRET_NAME") -> VaultSecret:
        """The current version of secret ``name``."""
        where = f"secret '{name}' in Key Vault {self.vault_url}"
        try:
            secret = self._client.get_secret(name)
        except ResourceNotFoundError as e:
            raise self._error(f"No {where} (setting {setting}).", FailureKind.SECRET_MISSING) from e
        except ClientAuthenticationError as e:
            raise self._error(f"Could not read {where}: the Function App's identity was refused "
                              f"({_reason(e)}).", FailureKind.VAULT_DENIED) from e
        except HttpResponseError as e:
            if e.status_code == 403:
                raise self._error(f"Could not read {where}: access denied.",
                                  FailureKind.VAULT_DENIED) from e
            raise self._error(f"Could not read {where}: {_reason(e)}.", FailureKind.VAULT_DENIED) from e
        except ServiceRequestError as e:
            raise self._error(f"Could not reach Key Vault at {self.vault_url}: {_reason(e)}.",
                              FailureKind.VAULT_UNREACHABLE) from e
        if not secret.value:
            raise self._error(f"The {where} is empty.", FailureKind.SECRET_MISSING)
        return VaultSecret(name, Secret(secret.value), secret.properties.content_type,
                           secret.properties.expires_on, secret.properties.version)

    def close(self) -> None:
        self._client.close()

    def _error(self, text: str, kind: FailureKind) -> CredentialError:
        return CredentialError(f"{text} {hint(kind, Ids(vault=self.vault_url))}", kind=kind)


def _reason(error: Exception) -> str:
    """The first line of an SDK error, which names the cause without echoing a request."""
    text = getattr(error, "message", None) or str(error)
    return str(text).strip().splitlines()[0][:300] if text else type(error).__name__
