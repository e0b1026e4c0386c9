"""App-only tokens from Entra ID with MSAL (client credentials), cached per process."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import msal
import requests

from shared.adapters.tls import mount_shared_contexts
from shared.diagnoses import Ids, hint
from shared.errors import AuthenticationError, FailureKind
from shared.model import Secret
from shared.ports import ClientCredential

log = logging.getLogger("mailferry.entra")

_AADSTS = re.compile(r"AADSTS\d+")

# Entra ID's answers by AADSTS code; any other code is TOKEN_REFUSED.
AADSTS_KINDS: dict[str, FailureKind] = {
    "AADSTS7000215": FailureKind.SECRET_INVALID,
    "AADSTS7000222": FailureKind.SECRET_EXPIRED,
    "AADSTS700016": FailureKind.APP_NOT_FOUND,
    "AADSTS7000112": FailureKind.APP_DISABLED,
    "AADSTS90002": FailureKind.TENANT_NOT_FOUND,
    "AADSTS900023": FailureKind.TENANT_MALFORMED,
    "AADSTS70011": FailureKind.INVALID_SCOPE,
    "AADSTS700027": FailureKind.CERTIFICATE_NOT_REGISTERED,
    "AADSTS700024": FailureKind.CLOCK_SKEW,
    "AADSTS70021": FailureKind.NO_FEDERATED_CREDENTIAL,
    "AADSTS700211": FailureKind.NO_FEDERATED_CREDENTIAL,
    "AADSTS700212": FailureKind.NO_FEDERATED_CREDENTIAL,
    "AADSTS700213": FailureKind.NO_FEDERATED_CREDENTIAL,
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
        self._tenant_id = tenant_id
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
            error = None if "access_token" in result else _authentication_error(result, self._ids())
            if error is not None and error.code in ROTATION_CODES and self.credential.refresh():
                log.warning("Entra ID refused the credential (%s); re-read it from Key Vault and "
                            "retrying once", error.code)
                self._app = None  # MSAL fixes the credential when the application is built
                result = self._application().acquire_token_for_client(scopes=[self._scope])
                error = None if "access_token" in result else _authentication_error(result, self._ids())
            if error is not None:
                raise error
            self.last_token_source = result.get("token_source")
            return Secret(result["access_token"])

    def _ids(self) -> Ids:
        return Ids(client_id=self._client_id, tenant_id=self._tenant_id)

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            session = mount_shared_contexts(requests.Session())
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
                kind = FailureKind.TENANT_MALFORMED
                raise AuthenticationError(
                    f"Entra ID authority {self._authority} is not usable ({e}). {hint(kind, self._ids())}",
                    kind=kind) from e
            except requests.RequestException as e:
                kind = FailureKind.ENTRA_UNREACHABLE
                raise AuthenticationError(
                    f"Could not reach Entra ID at {self._authority}: {type(e).__name__}. "
                    f"{hint(kind)}", kind=kind) from e
        return self._app


def _authentication_error(result: dict[str, Any], ids: Ids) -> AuthenticationError:
    """The error for MSAL's error dict: its AADSTS code, first line and the table's fix."""
    description = str(result.get("error_description") or "")
    match = _AADSTS.search(description)
    code = match.group(0) if match else None
    first_line = description.splitlines()[0] if description else str(result.get("error"))
    kind = AADSTS_KINDS.get(code or "", FailureKind.TOKEN_REFUSED)
    return AuthenticationError(
        f"Entra ID refused a token for app {ids.client_id}: {first_line} {hint(kind, ids)}",
        kind=kind, code=code)
