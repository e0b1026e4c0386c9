"""Reads the app's client secret from Key Vault, once per process."""

from __future__ import annotations

import threading
from pathlib import Path

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.keyvault.secrets import SecretClient

from shared.errors import CredentialError
from shared.model import Secret


class KeyVaultSecretSource:
    """The client secret, read through ``SecretClient`` with the app's managed identity."""

    def __init__(self, vault_url: str, secret_name: str, credential: TokenCredential, *,
                 verify_challenge_resource: bool = True, ca_bundle: Path | None = None) -> None:
        self._vault_url = vault_url
        self._name = secret_name
        self._client = SecretClient(
            vault_url=vault_url,
            credential=credential,
            verify_challenge_resource=verify_challenge_resource,
            connection_verify=str(ca_bundle) if ca_bundle else True,
        )
        self._lock = threading.Lock()
        self._cached: Secret | None = None

    def get_secret(self) -> Secret:
        """The secret, from the process cache when it has been read before."""
        with self._lock:
            if self._cached is None:
                self._cached = self._read()
            return self._cached

    def refresh(self) -> Secret:
        """Read the secret again (after a rotation)."""
        with self._lock:
            self._cached = self._read()
            return self._cached

    def _read(self) -> Secret:
        where = f"secret '{self._name}' in Key Vault {self._vault_url}"
        try:
            value = self._client.get_secret(self._name).value
        except ResourceNotFoundError as e:
            raise CredentialError(
                f"No {where}: store the client secret's Value under that name, "
                "or fix CLIENT_SECRET_NAME."
            ) from e
        except ClientAuthenticationError as e:
            raise CredentialError(
                f"Could not read {where}: the Function App's identity was refused "
                f"({_reason(e)}). Check MANAGED_IDENTITY_CLIENT_ID and that the identity "
                "has the 'Key Vault Secrets User' role on the vault."
            ) from e
        except HttpResponseError as e:
            if e.status_code == 403:
                raise CredentialError(
                    f"Could not read {where}: access denied. Grant the Function App's identity "
                    "the 'Key Vault Secrets User' role on the vault (RBAC mode)."
                ) from e
            raise CredentialError(f"Could not read {where}: {_reason(e)}.") from e
        except ServiceRequestError as e:
            raise CredentialError(
                f"Could not reach Key Vault at {self._vault_url}: {_reason(e)}. "
                "Check KEY_VAULT_URL and the network path to the vault."
            ) from e
        if not value:
            raise CredentialError(f"The {where} is empty: store the client secret's Value in it.")
        return Secret(value)

    def close(self) -> None:
        self._client.close()


def _reason(error: Exception) -> str:
    """The first line of an SDK error, which names the cause without echoing a request."""
    text = getattr(error, "message", None) or str(error)
    return str(text).strip().splitlines()[0][:300] if text else type(error).__name__
