"""What each failure most likely means and the exact fix: the doctor's table, and the
table of docs/troubleshooting.md (``python -m shared.diagnoses`` prints it; a test keeps
them equal).

Fixes are templates filled with the real IDs: ``{client_id}``, ``{tenant_id}``,
``{service_principal_id}`` (the Enterprise Application's object ID, the token's ``oid``),
``{mailbox}``, ``{vault}``, ``{scope}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import (
    AuthenticationError,
    ConfigurationError,
    CredentialError,
    MailboxAccessError,
    MailServerError,
)


@dataclass(frozen=True)
class Diagnosis:
    """A symptom, its most likely causes, and the fixes."""

    symptom: str
    cause: str
    fixes: tuple[str, ...]


_EXCHANGE_AUTH = (
    "Register the app in Exchange with the **Enterprise Application's** object ID (not the App "
    "Registration's): `New-ServicePrincipal -AppId {client_id} -ObjectId {service_principal_id}`",
    "Grant the app the mailbox: `Add-MailboxPermission -Identity {mailbox} -User "
    "{service_principal_id} -AccessRights FullAccess`",
    "Enable the protocol on the mailbox: `Set-CASMailbox -Identity {mailbox} -ImapEnabled $true` "
    "(`-PopEnabled $true` for POP3)",
    "Check that {mailbox} exists: an unknown address gets the same answer",
)

DIAGNOSES: dict[str, Diagnosis] = {
    "setting": Diagnosis(
        "`… is not set` / `… expected …` (Configuration error)",
        "a setting is missing or malformed; nothing ran",
        ("Set it as the message says in the Function App's settings (locally: local.settings.json), "
         "then run `mailferry doctor` again",)),
    "kv_missing": Diagnosis(
        "`No secret '…' in Key Vault`",
        "the credential is not stored under the configured name",
        ("Store the credential in {vault}, or fix CLIENT_SECRET_NAME / CLIENT_CERTIFICATE_NAME",)),
    "kv_denied": Diagnosis(
        "`Could not read secret … access denied` / `identity was refused`",
        "the Function App's identity has no data-plane role on the vault, or the wrong identity is used",
        ("Grant the identity **Key Vault Secrets User** on {vault} (`az role assignment create --role "
         "\"Key Vault Secrets User\" --assignee <identity principal id> --scope <vault resource id>`)",
         "Check MANAGED_IDENTITY_CLIENT_ID names the identity assigned to the Function App")),
    "kv_unreachable": Diagnosis(
        "`Could not reach Key Vault`",
        "wrong vault URL, or the network path (firewall, private endpoint) is closed",
        ("Check KEY_VAULT_URL ({vault}) and the vault's network rules",)),
    "cert_format": Diagnosis(
        "`… is not a certificate with its private key`",
        "the vault entry is not a certificate with an exportable private key",
        ("Import the certificate into Key Vault **as a certificate** (PFX or PEM with its key) and set "
         "CLIENT_CERTIFICATE_NAME to its name",)),
    "no_identity": Diagnosis(
        "`No managed identity is available`",
        "the user-assigned identity is not assigned to the Function App",
        ("Assign the identity to the Function App and set MANAGED_IDENTITY_CLIENT_ID to its client ID",)),
    "AADSTS7000215": Diagnosis(
        "`AADSTS7000215` invalid client secret",
        "the secret's **ID** was stored instead of its **Value**, or it was rotated",
        ("Store the secret's Value (shown once, when it is created) in {vault}: `az keyvault secret set "
         "--vault-name <vault> --name <CLIENT_SECRET_NAME> --file value.txt`",
         "mailferry re-reads the vault once on this error, so a rotation needs no restart")),
    "AADSTS7000222": Diagnosis(
        "`AADSTS7000222` client secret expired",
        "the client secret has expired",
        ("Create a new secret (`az ad app credential reset --id {client_id} --append`) and store its "
         "Value in {vault}; consider AUTH_MODE=certificate or federated",)),
    "AADSTS700016": Diagnosis(
        "`AADSTS700016` application not found",
        "wrong client ID, or the app lives in another tenant",
        ("Check M365_CLIENT_ID ({client_id}) and M365_TENANT_ID ({tenant_id})",)),
    "AADSTS90002": Diagnosis(
        "`AADSTS90002` tenant not found",
        "wrong tenant ID, or the wrong cloud",
        ("Check M365_TENANT_ID ({tenant_id}) and M365_CLOUD / AUTHORITY_HOST",)),
    "AADSTS70011": Diagnosis(
        "`AADSTS70011` invalid scope",
        "client credentials need the resource followed by `/.default`",
        ("Set TOKEN_SCOPE to {scope}, or leave it unset to take it from M365_CLOUD",)),
    "AADSTS700027": Diagnosis(
        "`AADSTS700027` invalid client assertion signature",
        "the certificate in Key Vault is not registered on the app, or has expired",
        ("Upload the certificate's public part to the app: `az ad app credential reset --id {client_id} "
         "--cert @cert.pem --append`",)),
    "AADSTS700024": Diagnosis(
        "`AADSTS700024` assertion outside its valid time range",
        "the host's clock is off",
        ("Check the clock of the machine running mailferry",)),
    "federated": Diagnosis(
        "`AADSTS70021` / `AADSTS700213` no matching federated identity record",
        "the app has no federated credential trusting the managed identity",
        ("Add one to app {client_id}: issuer `https://login.microsoftonline.com/{tenant_id}/v2.0`, "
         "subject = the managed identity's object ID, audience `api://AzureADTokenExchange`",)),
    "token": Diagnosis(
        "`Entra ID refused a token` (another AADSTS code)",
        "see the AADSTS code in the message",
        ("Look the code up in the Entra ID error reference; check M365_TENANT_ID and M365_CLIENT_ID",)),
    "credential_expired": Diagnosis(
        "credential expired",
        "the client secret or certificate has passed its expiry date",
        ("Rotate it: create a new one on app {client_id} and store it in {vault}",)),
    "credential_expiring": Diagnosis(
        "credential expires within 30 days",
        "the client secret or certificate will expire soon",
        ("Rotate it before then: add a new one to app {client_id} (`--append`), store it in {vault}; "
         "mailferry picks it up on the next cold start or the first refused token",)),
    "token_audience": Diagnosis(
        "the token's audience is not Outlook (e.g. Microsoft Graph)",
        "TOKEN_SCOPE names another resource; Exchange refuses a Graph token",
        ("Set TOKEN_SCOPE to {scope}, or leave it unset",)),
    "token_role": Diagnosis(
        "the token has no `IMAP.AccessAsApp` / `POP.AccessAsApp` role",
        "the application permission is missing, is delegated, or lacks admin consent",
        ("Add the **application** permission IMAP.AccessAsApp (POP.AccessAsApp for POP3) of "
         "'Office 365 Exchange Online' to app {client_id} and grant admin consent "
         "(`az ad app permission admin-consent --id {client_id}`)",)),
    "token_tenant": Diagnosis(
        "the token is for another tenant",
        "M365_TENANT_ID is not the tenant that owns the mailboxes",
        ("Set M365_TENANT_ID to the mailboxes' tenant",)),
    "tcp": Diagnosis(
        "`Could not connect to IMAP server` / timed out",
        "wrong host or port, or outbound traffic to it is blocked",
        ("Check IMAP_HOST/IMAP_PORT (POP3_HOST/POP3_PORT) and that the Function App may reach port "
         "993 (995 for POP3): VNet, NSG, firewall",)),
    "tls_untrusted": Diagnosis(
        "`TLS … certificate is not trusted`",
        "a TLS-inspecting proxy or private CA sits in between, or the host name is wrong",
        ("Set CA_BUNDLE to a PEM file with that CA, or fix IMAP_HOST",)),
    "tls": Diagnosis(
        "`TLS … failed`",
        "the port does not speak implicit TLS (or speaks it when STARTTLS was expected)",
        ("Match IMAP_SECURITY to the port: tls for 993 (POP3: 995), starttls for 143 (POP3: 110)",)),
    "no_xoauth2": Diagnosis(
        "`does not offer XOAUTH2`",
        "the host is not Exchange Online",
        ("Set IMAP_HOST to the cloud's host (outlook.office365.com for the global cloud) or unset it",)),
    "auth_failed": Diagnosis(
        "`the IMAP server refused the app's token` (`AUTHENTICATE failed`, POP3 `-ERR`)",
        "service principal missing or made with the App Registration's object ID; no FullAccess on "
        "the mailbox; IMAP/POP disabled on it; unknown mailbox",
        _EXCHANGE_AUTH),
    "not_connected": Diagnosis(
        "`User is authenticated but not connected`",
        "the token is valid but this mailbox is not granted to the app, or `user=` names another "
        "mailbox",
        ("Grant it: `Add-MailboxPermission -Identity {mailbox} -User {service_principal_id} "
         "-AccessRights FullAccess`; for a shared mailbox use the shared mailbox's own address",)),
    "folder": Diagnosis(
        "`the folder does not exist`",
        "a folder named in MAILBOXES is not in the mailbox",
        ("Use a name the mailbox lists (the doctor prints them), or fix MAILBOXES",)),
    "mail_server": Diagnosis(
        "another IMAP/POP3 error",
        "the server failed or closed the connection (throttling: `Request is throttled`)",
        ("Read the server's text in the message; throttled mailboxes recover on a later run",)),
}

_FEDERATED_CODES = {"AADSTS70021", "AADSTS700213", "AADSTS700211", "AADSTS700212"}


def diagnose_error(error: Exception) -> Diagnosis:
    """The diagnosis for an error the adapters raise."""
    text = str(error)
    if isinstance(error, ConfigurationError):
        return DIAGNOSES["setting"]
    if isinstance(error, CredentialError):
        for needle, key in (("No secret", "kv_missing"), ("access denied", "kv_denied"),
                            ("was refused", "kv_denied"), ("Could not reach", "kv_unreachable"),
                            ("not a certificate", "cert_format"), ("holds no private key", "cert_format"),
                            ("No managed identity", "no_identity")):
            if needle in text:
                return DIAGNOSES[key]
        return DIAGNOSES["kv_denied"]
    if isinstance(error, MailboxAccessError):
        return DIAGNOSES["not_connected"]
    if isinstance(error, AuthenticationError):
        if error.code in DIAGNOSES:
            return DIAGNOSES[error.code]
        if error.code in _FEDERATED_CODES:
            return DIAGNOSES["federated"]
        if "does not offer XOAUTH2" in text:
            return DIAGNOSES["no_xoauth2"]
        if error.code is None and not text.startswith(("Entra ID", "Could not reach Entra")):
            return DIAGNOSES["auth_failed"]  # the mail server's refusal
        return DIAGNOSES["token"]
    if isinstance(error, MailServerError):
        for needle, key in (("not trusted", "tls_untrusted"), ("TLS to", "tls"),
                            ("Could not connect", "tcp"), ("Timed out connecting", "tcp"),
                            ("folder does not exist", "folder")):
            if needle in text:
                return DIAGNOSES[key]
    return DIAGNOSES["mail_server"]


def troubleshooting_markdown() -> str:
    """The table of docs/troubleshooting.md, from DIAGNOSES."""
    lines = ["| you see | what it means | fix |", "| --- | --- | --- |"]
    for diagnosis in DIAGNOSES.values():
        fixes = "; ".join(diagnosis.fixes).replace("|", "\\|")
        lines.append(f"| {diagnosis.symptom} | {diagnosis.cause} | {fixes} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(troubleshooting_markdown(), end="")
