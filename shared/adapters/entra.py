"""App-only tokens from Entra ID with MSAL (client credentials), cached per process."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import msal
import requests

from shared.adapters.app_credentials import ClientCredential
from shared.errors import AuthenticationError
from shared.model import Secret

log = logging.getLogger("mailferry.entra")

_AADSTS = re.compile(r"AADSTS\d+")

HINTS: dict[str, str] = {
    "AADSTS7000215": "The client secret is wrong: store the secret's Value, not its Secret ID, "
                     "in Key Vault (or the secret was rotated and the vault holds the old one).",
    "AADSTS7000222": "The client secret has expired: create a new one on the app registration "
                     "and store its Value in Key Vault.",
    "AADSTS700016": "No app with this client ID exists in the tenant: check M365_CLIENT_ID "
                    "and M365_TENANT_ID.",
    "AADSTS90002": "The tenant was not found: check M365_TENANT_ID and the cloud (AUTHORITY_HOST).",
    "AADSTS70011": "The scope is invalid: app-only tokens need '<resource>/.default', "
                   "e.g. https://outlook.office365.com/.default (TOKEN_SCOPE).",
    "AADSTS900023": "The tenant ID is malformed: check M365_TENANT_ID.",
    "AADSTS7000112": "The application is disabled in this tenant: enable its service principal.",
    "AADSTS700027": "The certificate is not registered on the app registration, or has expired: "
                    "upload the certificate in Key Vault (CLIENT_CERTIFICATE_NAME) to the app's "
                    "Certificates & secrets.",
    "AADSTS700024": "The client assertion is outside its valid time: check the host's clock.",
    "AADSTS70021": "No federated identity credential on the app matches the managed identity: add "
                   "one with the identity's object ID as subject and audience api://AzureADTokenExchange.",
    "AADSTS700213": "No federated identity credential on the app matches the managed identity: add "
                    "one with the identity's object ID as subject.",
}


# Codes after which the credential is re-read from Key Vault and the request retried once:
# the secret or certificate was rotated (or expired) and the vault may hold the new one.
ROTATION_CODES = frozenset({"AADSTS7000215", "AADSTS7000222", "AADSTS700027"})


class MsalTokenSource:
    """One ``ConfidentialClientApplication`` per process, built on first use.

    MSAL fetches the OpenID configuration when the application is built, so it is built
    lazily; its token cache then serves ``acquire_token_for_client`` until expiry.
    """

    def __init__(self, *, tenant_id: str, client_id: str, credential: ClientCredential,
                 authority_host: str, scope: str, ca_bundle: Path | None = None) -> None:
        self._authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._client_id = client_id
        self.credential = credential
        self._scope = scope
        self._ca_bundle = ca_bundle
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()
        self.last_token_source: str | None = None

    def get_token(self) -> Secret:
        """An access token for the mail server; raises AuthenticationError with the AADSTS fix."""
        with self._lock:
            result = self._application().acquire_token_for_client(scopes=[self._scope])
            error = None if "access_token" in result else _authentication_error(result, self._client_id)
            if error is not None and error.code in ROTATION_CODES and self.credential.refresh():
                log.warning("Entra ID refused the credential (%s); re-read it from Key Vault and "
                            "retrying once", error.code)
                self._app = None  # MSAL fixes the credential when the application is built
                result = self._application().acquire_token_for_client(scopes=[self._scope])
                error = None if "access_token" in result else _authentication_error(
                    result, self._client_id)
            if error is not None:
                raise error
            self.last_token_source = result.get("token_source")
            return Secret(result["access_token"])

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            session = requests.Session()
            if self._ca_bundle is not None:
                # requests lets REQUESTS_CA_BUNDLE override session.verify unless
                # trust_env is off; CA_BUNDLE is the setting that must win.
                session.trust_env = False
                session.verify = str(self._ca_bundle)
            try:
                self._app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=self.credential.get(),
                    authority=self._authority,
                    http_client=session,
                    # The authority comes from validated settings and is trusted as is;
                    # discovery would call the global cloud even for sovereign ones.
                    instance_discovery=False,
                )
            except ValueError as e:
                raise AuthenticationError(
                    f"Entra ID authority {self._authority} is not usable ({e}): check "
                    "AUTHORITY_HOST and M365_TENANT_ID."
                ) from e
            except requests.RequestException as e:
                raise AuthenticationError(
                    f"Could not reach Entra ID at {self._authority}: {type(e).__name__}. "
                    "Check AUTHORITY_HOST and outbound network access."
                ) from e
        return self._app


def _authentication_error(result: dict[str, Any], client_id: str) -> AuthenticationError:
    description = str(result.get("error_description") or "")
    match = _AADSTS.search(description)
    code = match.group(0) if match else None
    first_line = description.splitlines()[0] if description else str(result.get("error"))
    hint = HINTS.get(code or "", "")
    text = f"Entra ID refused a token for app {client_id}: {first_line}"
    return AuthenticationError(f"{text} {hint}".strip(), code=code)
