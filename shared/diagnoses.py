"""What each kind of failure most likely means and the exact fix: the one advice table.

Adapters append ``hint(kind)`` to their messages, the doctor prints the fixes of the
failure's kind, and the Troubleshooting table (docs/troubleshooting.md) is
``troubleshooting_markdown()`` (``python -m shared.diagnoses`` prints it; a test keeps them equal).

Fixes are templates filled with the real IDs where they are known: ``{client_id}``,
``{tenant_id}``, ``{service_principal_id}`` (the Enterprise Application's object ID, the
token's ``oid``), ``{mailbox}``, ``{vault}``, ``{scope}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from shared.errors import FailureKind, MailferryError


@dataclass(frozen=True)
class Diagnosis:
    """A symptom, its most likely causes, and the fixes."""

    symptom: str
    cause: str
    fixes: tuple[str, ...]


@dataclass(frozen=True)
class Ids:
    """The IDs the fixes are written with; placeholders where they are not known."""

    client_id: str = "<client id>"
    tenant_id: str = "<tenant id>"
    service_principal_id: str = "<Enterprise Application object id>"
    mailbox: str = "<mailbox>"
    vault: str = "<vault>"
    scope: str = "https://outlook.office365.com/.default"

    def fill(self, diagnosis: Diagnosis) -> list[str]:
        """The diagnosis's fixes with these IDs."""
        return [fix.format(**asdict(self)) for fix in diagnosis.fixes]


_EXCHANGE_AUTH = (
    "Register the app in Exchange with the **Enterprise Application's** object ID (not the App "
    "Registration's): `New-ServicePrincipal -AppId {client_id} -ObjectId {service_principal_id}`",
    "Grant the app the mailbox: `Add-MailboxPermission -Identity {mailbox} -User "
    "{service_principal_id} -AccessRights FullAccess`",
    "Enable the protocol on the mailbox: `Set-CASMailbox -Identity {mailbox} -ImapEnabled $true` "
    "(`-PopEnabled $true` for POP3)",
    "Give app {client_id} the **application** permission IMAP.AccessAsApp (POP.AccessAsApp for POP3) "
    "with admin consent: a valid token has `aud` https://outlook.office365.com and that role",
    "Check that {mailbox} exists: an unknown address gets the same answer",
)

DIAGNOSES: dict[FailureKind, Diagnosis] = {
    FailureKind.SETTING: Diagnosis(
        "`… is not set` / `… expected …` (Configuration error)",
        "a setting is missing or malformed; nothing ran",
        ("Set it as the message says in the Function App's settings (locally: local.settings.json), "
         "then run `mailferry doctor` again",)),
    FailureKind.SECRET_MISSING: Diagnosis(
        "`No secret '…' in Key Vault` / `… is empty`",
        "the credential is not stored under the configured name",
        ("Store the credential in {vault}, or fix CLIENT_SECRET_NAME / CLIENT_CERTIFICATE_NAME",)),
    FailureKind.VAULT_DENIED: Diagnosis(
        "`Could not read secret … access denied` / `identity was refused`",
        "the Function App's identity has no data-plane role on the vault, or the wrong identity is used",
        ("Grant the identity **Key Vault Secrets User** on {vault} (`az role assignment create --role "
         "\"Key Vault Secrets User\" --assignee <identity principal id> --scope <vault resource id>`)",
         "Check MANAGED_IDENTITY_CLIENT_ID names the identity assigned to the Function App")),
    FailureKind.VAULT_UNREACHABLE: Diagnosis(
        "`Could not reach Key Vault`",
        "wrong vault URL, or the network path (firewall, private endpoint) is closed",
        ("Check KEY_VAULT_URL ({vault}) and the vault's network rules",)),
    FailureKind.CERTIFICATE_FORMAT: Diagnosis(
        "`… is not a certificate with its private key`",
        "the vault entry is not a certificate with an exportable private key",
        ("Import the certificate into Key Vault **as a certificate** (PFX or PEM with its key) and set "
         "CLIENT_CERTIFICATE_NAME to its name",)),
    FailureKind.NO_IDENTITY: Diagnosis(
        "`No managed identity is available` / `The managed identity … could not get a token`",
        "the user-assigned identity is not assigned to the Function App",
        ("Assign the identity to the Function App and set MANAGED_IDENTITY_CLIENT_ID to its client ID",)),
    FailureKind.SECRET_INVALID: Diagnosis(
        "`AADSTS7000215` invalid client secret",
        "the secret's **ID** was stored instead of its **Value**, or it was rotated",
        ("Store the secret's Value, not its Secret ID (the Value is shown once, when the secret is "
         "created), in {vault}: `az keyvault secret set --vault-name <vault> --name "
         "<CLIENT_SECRET_NAME> --file value.txt`",
         "mailferry re-reads the vault once on this error, so a rotation needs no restart")),
    FailureKind.SECRET_EXPIRED: Diagnosis(
        "`AADSTS7000222` client secret expired",
        "the client secret has expired",
        ("Create a new secret (`az ad app credential reset --id {client_id} --append`) and store its "
         "Value in {vault}; consider AUTH_MODE=certificate or federated",)),
    FailureKind.APP_NOT_FOUND: Diagnosis(
        "`AADSTS700016` application not found",
        "wrong client ID, or the app lives in another tenant",
        ("Check M365_CLIENT_ID ({client_id}) and M365_TENANT_ID ({tenant_id})",)),
    FailureKind.APP_DISABLED: Diagnosis(
        "`AADSTS7000112` application disabled",
        "the app's service principal is disabled in the tenant",
        ("Enable it: `az ad sp update --id {client_id} --set accountEnabled=true`",)),
    FailureKind.TENANT_NOT_FOUND: Diagnosis(
        "`AADSTS90002` tenant not found",
        "wrong tenant ID, or the wrong cloud",
        ("Check M365_TENANT_ID ({tenant_id}) and M365_CLOUD / AUTHORITY_HOST",)),
    FailureKind.TENANT_MALFORMED: Diagnosis(
        "`AADSTS900023` invalid tenant / `Entra ID authority … is not usable`",
        "M365_TENANT_ID or AUTHORITY_HOST is malformed",
        ("Check M365_TENANT_ID ({tenant_id}) and AUTHORITY_HOST",)),
    FailureKind.INVALID_SCOPE: Diagnosis(
        "`AADSTS70011` invalid scope",
        "client credentials need the resource followed by `/.default`",
        ("Set TOKEN_SCOPE to {scope}, or leave it unset to take it from M365_CLOUD",)),
    FailureKind.CERTIFICATE_NOT_REGISTERED: Diagnosis(
        "`AADSTS700027` invalid client assertion signature",
        "the certificate in Key Vault is not registered on the app, or has expired",
        ("Upload the certificate's public part to the app's Certificates & secrets: `az ad app "
         "credential reset --id {client_id} --cert @cert.pem --append`",)),
    FailureKind.CLOCK_SKEW: Diagnosis(
        "`AADSTS700024` assertion outside its valid time range",
        "the host's clock is off",
        ("Check the clock of the machine running mailferry",)),
    FailureKind.NO_FEDERATED_CREDENTIAL: Diagnosis(
        "`AADSTS70021` / `AADSTS700213` no matching federated identity record",
        "the app has no federated credential trusting the managed identity",
        ("Add one to app {client_id}: issuer `https://login.microsoftonline.com/{tenant_id}/v2.0`, "
         "subject = the managed identity's object ID, audience `api://AzureADTokenExchange`",)),
    FailureKind.TOKEN_REFUSED: Diagnosis(
        "`Entra ID refused a token` (another AADSTS code)",
        "see the AADSTS code in the message",
        ("Look the code up in the Entra ID error reference; check M365_TENANT_ID and M365_CLIENT_ID",)),
    FailureKind.ENTRA_UNREACHABLE: Diagnosis(
        "`Could not reach Entra ID`",
        "wrong AUTHORITY_HOST, or outbound HTTPS to it is blocked",
        ("Check AUTHORITY_HOST (or M365_CLOUD) and that the Function App may reach it on port 443",)),
    FailureKind.CREDENTIAL_EXPIRED: Diagnosis(
        "credential expired",
        "the client secret or certificate has passed its expiry date",
        ("Rotate it: create a new one on app {client_id} and store it in {vault}",)),
    FailureKind.CREDENTIAL_EXPIRING: Diagnosis(
        "credential expires within 30 days",
        "the client secret or certificate will expire soon",
        ("Rotate it before then: add a new one to app {client_id} (`--append`), store it in {vault}; "
         "mailferry picks it up on the next cold start or the first refused token",)),
    FailureKind.TOKEN_AUDIENCE: Diagnosis(
        "the token's audience is not Outlook (e.g. Microsoft Graph)",
        "TOKEN_SCOPE names another resource; Exchange refuses a Graph token",
        ("Set TOKEN_SCOPE to {scope}, or leave it unset",)),
    FailureKind.TOKEN_ROLE: Diagnosis(
        "the token has no `IMAP.AccessAsApp` / `POP.AccessAsApp` role",
        "the application permission is missing, is delegated, or lacks admin consent",
        ("Add the **application** permission IMAP.AccessAsApp (POP.AccessAsApp for POP3) of "
         "'Office 365 Exchange Online' to app {client_id} and grant admin consent "
         "(`az ad app permission admin-consent --id {client_id}`)",)),
    FailureKind.TOKEN_TENANT: Diagnosis(
        "the token is for another tenant",
        "M365_TENANT_ID is not the tenant that owns the mailboxes",
        ("Set M365_TENANT_ID to the mailboxes' tenant",)),
    FailureKind.CONNECT_FAILED: Diagnosis(
        "`Could not connect to IMAP server` (POP3)",
        "wrong host or port: the name does not resolve, or nothing listens there",
        ("Check IMAP_HOST/IMAP_PORT (POP3_HOST/POP3_PORT): 993 for IMAP, 995 for POP3",)),
    FailureKind.CONNECT_TIMEOUT: Diagnosis(
        "`Timed out connecting to …`",
        "outbound traffic to the server is blocked, or the host is wrong",
        ("Check that the Function App may reach port 993 (995 for POP3) of IMAP_HOST (POP3_HOST): "
         "VNet, NSG, firewall",)),
    FailureKind.TLS_UNTRUSTED: Diagnosis(
        "`TLS … certificate is not trusted`",
        "a TLS-inspecting proxy or private CA sits in between, or the host name is wrong",
        ("Set CA_BUNDLE to a PEM file with that CA, or fix IMAP_HOST (POP3_HOST)",)),
    FailureKind.TLS_PROTOCOL: Diagnosis(
        "`TLS … failed`",
        "the port does not speak implicit TLS (or speaks it when STARTTLS was expected)",
        ("Match IMAP_SECURITY to the port: tls for 993 (POP3: 995), starttls for 143 (POP3: 110)",)),
    FailureKind.NO_XOAUTH2: Diagnosis(
        "`does not offer XOAUTH2` / `does not accept AUTH XOAUTH2`",
        "the host is not Exchange Online",
        ("Set IMAP_HOST (POP3_HOST) to the cloud's host (outlook.office365.com for the global cloud) "
         "or unset it",)),
    FailureKind.AUTH_REFUSED: Diagnosis(
        "`the IMAP server refused the app's token` (`AUTHENTICATE failed`, POP3 `-ERR`)",
        "service principal missing or made with the App Registration's object ID; no FullAccess on "
        "the mailbox; IMAP/POP disabled on it; a delegated instead of an application permission; "
        "unknown mailbox",
        _EXCHANGE_AUTH),
    FailureKind.NOT_CONNECTED: Diagnosis(
        "`User is authenticated but not connected`",
        "the token is valid but this mailbox is not granted to the app, or `user=` names another "
        "mailbox (also seen when an app opens many connections to a mailbox in a short time)",
        ("Grant it: `Add-MailboxPermission -Identity {mailbox} -User {service_principal_id} "
         "-AccessRights FullAccess`; for a shared mailbox use the shared mailbox's own address",)),
    FailureKind.THROTTLED: Diagnosis(
        "`Request is throttled. Suggested Backoff Time: … milliseconds` (`NO`, `BAD` or `* BYE`)",
        "Exchange is throttling this mailbox (a large backlog, or many connections in a short time) "
        "and says how long to wait",
        ("Nothing to fix when it is rare: mailferry leaves the mailbox alone until the time Exchange "
         "suggested (without one: 1 minute, doubling up to 1 hour), then resumes from the checkpoint; "
         "the other mailboxes are not affected, and `mailferry status` shows until when",
         "If it lasts for hours or happens on every run, poll less often (POLL_SCHEDULE) and check "
         "that no other app opens connections to {mailbox}")),
    FailureKind.CONNECTION_DROPPED: Diagnosis(
        "`closed the connection` / `connection lost` / `timed out during …`",
        "the server or the network ended the session in the middle of a command (a restart, an "
        "idle timeout on the way, an unstable link)",
        ("Nothing to fix when it is rare: the next run goes on from the checkpoint",
         "If it persists, check the network path to IMAP_HOST (POP3_HOST): proxies or firewalls "
         "that cut connections")),
    FailureKind.FOLDER_MISSING: Diagnosis(
        "`the folder does not exist`",
        "a folder named in MAILBOXES is not in the mailbox",
        ("Check the folder names in MAILBOXES: use names the mailbox lists (the doctor prints them)",)),
    FailureKind.SERVER_ERROR: Diagnosis(
        "another IMAP/POP3 error",
        "the server failed a command",
        ("Read the server's text in the message; the next run tries again",)),
    FailureKind.STORAGE_DENIED: Diagnosis(
        "`Could not … : access denied` (storage)",
        "the Function App's identity has no data role on the mail storage account",
        ("Give the identity the role the message names on the mail storage account: Storage Blob Data "
         "Contributor (blobs, leases), Storage Table Data Contributor (checkpoints, health), Storage "
         "Queue Data Contributor (fan-out)",)),
    FailureKind.STORAGE_UNREACHABLE: Diagnosis(
        "`Could not … : storage unreachable`, `… dropped the connection`, `… did not answer`",
        "a storage outage or a slow account if this worked before; otherwise wrong MAIL_STORAGE "
        "settings or a closed network path to the account",
        ("After an outage nothing is needed: the next run resumes from the checkpoint",
         "Otherwise check MAIL_STORAGE (or MAIL_STORAGE__blobServiceUri, __tableServiceUri, "
         "__queueServiceUri) and the storage account's network rules")),
    FailureKind.STORAGE_FAILED: Diagnosis(
        "another storage error",
        "storage refused or failed a request",
        ("Read the error code in the message; the next run tries again from the checkpoint",)),
    FailureKind.CHECKPOINT_CONFLICT: Diagnosis(
        "`CheckpointConflict`",
        "another run advanced the folder's checkpoint first (overlapping runs)",
        ("Nothing to fix: the other run delivered those messages; if it happens on every run, check "
         "that only one Function App polls these mailboxes",)),
    FailureKind.OTHER: Diagnosis(
        "any other error",
        "an unexpected failure",
        ("Run `mailferry doctor`, and read the message and the log",)),
}


def diagnosis_for(error: BaseException) -> Diagnosis:
    """The diagnosis for an error, by its kind (never by its wording)."""
    return DIAGNOSES[error.kind if isinstance(error, MailferryError) else FailureKind.OTHER]


def hint(kind: FailureKind, ids: Ids | None = None) -> str:
    """The table's cause and fixes for ``kind`` as plain text, to end an error message."""
    diagnosis = DIAGNOSES[kind]
    fixes = "; ".join((ids or Ids()).fill(diagnosis))
    return _plain(f"Most likely: {diagnosis.cause}. Fix: {fixes}.")


def _plain(markdown: str) -> str:
    return markdown.replace("**", "")


def troubleshooting_markdown() -> str:
    """The table of docs/troubleshooting.md, from DIAGNOSES."""
    lines = ["| you see | what it means | fix |", "| --- | --- | --- |"]
    for diagnosis in DIAGNOSES.values():
        fixes = "; ".join(diagnosis.fixes).replace("|", "\\|")
        lines.append(f"| {diagnosis.symptom} | {diagnosis.cause} | {fixes} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(troubleshooting_markdown(), end="")
