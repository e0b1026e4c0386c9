"""Typed settings, read once from a mapping (the environment on Functions) and validated together.

``SETTINGS`` is the single list of every setting the app reads: the README's table,
``local.settings.json.example`` and the Bicep app settings are checked against it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from shared.errors import ConfigurationError
from shared.model import Secret

GLOBAL_AUTHORITY_HOST = "https://login.microsoftonline.com"
GLOBAL_TOKEN_SCOPE = "https://outlook.office365.com/.default"  # noqa: S105 (a scope, not a secret)
GLOBAL_IMAP_HOST = "outlook.office365.com"


@dataclass(frozen=True)
class SettingSpec:
    """One setting the app reads: its name, whether it must be set, and what it means."""

    name: str
    description: str
    example: str
    required: bool = False
    default: str | None = None
    group: str = "core"


STORAGE = "MAIL_STORAGE"

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("M365_TENANT_ID", "Directory (tenant) ID of the Entra ID tenant that owns the mailboxes.",
                "00000000-0000-0000-0000-000000000000", required=True),
    SettingSpec("M365_CLIENT_ID", "Application (client) ID of the app registration granted IMAP.AccessAsApp.",
                "11111111-1111-1111-1111-111111111111", required=True),
    SettingSpec("KEY_VAULT_URL", "URL of the Key Vault holding the app's client secret.",
                "https://mailferry-kv.vault.azure.net/", required=True),
    SettingSpec("CLIENT_SECRET_NAME", "Key Vault secret whose value is the client secret's Value.",
                "mailferry-client-secret", required=True),
    SettingSpec("KEY_VAULT_VERIFY_CHALLENGE_RESOURCE",
                "Check that Key Vault's auth challenge names the vault's own domain. Leave true on Azure.",
                "true", default="true"),
    SettingSpec("MANAGED_IDENTITY_CLIENT_ID",
                "Client ID of the user-assigned managed identity that reads Key Vault and storage.",
                "22222222-2222-2222-2222-222222222222"),
    SettingSpec("AUTHORITY_HOST", "Entra ID sign-in host.", GLOBAL_AUTHORITY_HOST,
                default=GLOBAL_AUTHORITY_HOST),
    SettingSpec("TOKEN_SCOPE", "Scope of the app-only token the mail server accepts.", GLOBAL_TOKEN_SCOPE,
                default=GLOBAL_TOKEN_SCOPE),
    SettingSpec("MAILBOXES",
                "Mailboxes to read, comma- or semicolon-separated; each may name folders after ':' "
                "separated by '|' (default INBOX). A JSON list of {address, folders} also works.",
                "ops@contoso.com, billing@contoso.com:INBOX|Invoices", required=True),
    SettingSpec("POLL_SCHEDULE", "NCRONTAB schedule of the poll timer (six fields, seconds first).",
                "0 */5 * * * *", required=True),
    SettingSpec("BLOB_CONTAINER", "Blob container that receives one .eml blob per message.", "mail",
                default="mail"),
    SettingSpec("CHECKPOINT_TABLE", "Table holding each folder's checkpoint and each mailbox's health.",
                "mailferrycheckpoints", default="mailferrycheckpoints"),
    SettingSpec(STORAGE, "Connection string of the mail storage account (local runs). On Azure use the "
                "identity-based MAIL_STORAGE__* settings instead.", "UseDevelopmentStorage=true",
                group="storage"),
    SettingSpec(f"{STORAGE}__blobServiceUri", "Blob endpoint of the mail storage account (identity-based).",
                "https://mailferrystore.blob.core.windows.net", group="storage"),
    SettingSpec(f"{STORAGE}__tableServiceUri", "Table endpoint of the mail storage account (identity-based).",
                "https://mailferrystore.table.core.windows.net", group="storage"),
    SettingSpec(f"{STORAGE}__queueServiceUri", "Queue endpoint of the mail storage account (identity-based).",
                "https://mailferrystore.queue.core.windows.net", group="storage"),
    SettingSpec(f"{STORAGE}__credential", "'managedidentity' for identity-based storage connections.",
                "managedidentity", group="storage"),
    SettingSpec(f"{STORAGE}__clientId", "Client ID of the user-assigned identity for the storage connection.",
                "22222222-2222-2222-2222-222222222222", group="storage"),
    SettingSpec("IMAP_HOST", "IMAP server.", GLOBAL_IMAP_HOST, default=GLOBAL_IMAP_HOST),
    SettingSpec("IMAP_PORT", "IMAP port.", "993", default="993"),
    SettingSpec("IMAP_SECURITY", "'tls' (implicit TLS, as on port 993) or 'starttls'.", "tls", default="tls"),
    SettingSpec("CA_BUNDLE", "PEM file of CAs to trust instead of the system's (private CAs, local stack).",
                "/etc/ssl/certs/ca-certificates.crt"),
    SettingSpec("MAX_CONCURRENT_MAILBOXES", "How many mailboxes one run polls at once.", "4", default="4"),
    SettingSpec("FETCH_BATCH_SIZE", "Messages fetched per IMAP command and checkpointed together.", "100",
                default="100"),
    SettingSpec("UPLOAD_CONCURRENCY", "Blob uploads in flight at once per mailbox.", "8", default="8"),
    SettingSpec("POLL_DEADLINE_SECONDS",
                "A run stops starting work after this many seconds; keep it below host.json functionTimeout.",
                "480", default="480"),
)

SETTING_NAMES: frozenset[str] = frozenset(s.name for s in SETTINGS)
_SPECS = {s.name: s for s in SETTINGS}

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")


@dataclass(frozen=True)
class MailboxConfig:
    """One mailbox to read and the folders to read in it."""

    address: str
    folders: tuple[str, ...] = ("INBOX",)


@dataclass(frozen=True)
class StorageConnection:
    """How to reach the mail storage account: a connection string, or endpoints plus an identity."""

    connection_string: Secret | None = None
    blob_service_uri: str | None = None
    table_service_uri: str | None = None
    queue_service_uri: str | None = None
    managed_identity_client_id: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything mailferry needs to run, validated."""

    tenant_id: str
    client_id: str
    key_vault_url: str
    client_secret_name: str
    mailboxes: tuple[MailboxConfig, ...]
    poll_schedule: str
    storage: StorageConnection
    key_vault_verify_challenge_resource: bool = True
    managed_identity_client_id: str | None = None
    authority_host: str = GLOBAL_AUTHORITY_HOST
    token_scope: str = GLOBAL_TOKEN_SCOPE
    blob_container: str = "mail"
    checkpoint_table: str = "mailferrycheckpoints"
    imap_host: str = GLOBAL_IMAP_HOST
    imap_port: int = 993
    imap_security: Literal["tls", "starttls"] = "tls"
    ca_bundle: Path | None = None
    max_concurrent_mailboxes: int = 4
    fetch_batch_size: int = 100
    upload_concurrency: int = 8
    poll_deadline_seconds: float = 480.0

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate every setting; raise one ConfigurationError naming each problem."""
        return _Reader(env).build()


class _Reader:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            spec = _SPECS[name]
            if spec.required:
                self.problems.append(f"{name} is not set: {spec.description} Example: {spec.example}")
            return spec.default
        return value.strip()

    def text(self, name: str, pattern: re.Pattern[str] | None = None, expected: str = "") -> str:
        value = self.raw(name) or ""
        if value and pattern is not None and not pattern.match(value):
            self.problems.append(f"{name} is '{value}', expected {expected}.")
        return value

    def https_url(self, name: str) -> str:
        value = self.raw(name) or ""
        if value:
            parsed = urlparse(value)
            if parsed.scheme != "https" or not parsed.hostname:
                self.problems.append(f"{name} is '{value}', expected an https:// URL.")
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        value = self.raw(name) or ""
        try:
            number = int(value)
        except ValueError:
            self.problems.append(f"{name} is '{value}', expected a whole number from {low} to {high}.")
            return low
        if not low <= number <= high:
            self.problems.append(f"{name} is {number}, expected a whole number from {low} to {high}.")
        return number

    def boolean(self, name: str) -> bool:
        value = (self.raw(name) or "").lower()
        if value in {"true", "1", "yes"}:
            return True
        if value in {"false", "0", "no"}:
            return False
        self.problems.append(f"{name} is '{value}', expected true or false.")
        return True

    def build(self) -> Settings:
        guid = "a GUID like 00000000-0000-0000-0000-000000000000"
        tenant_id = self.text("M365_TENANT_ID", _GUID, guid)
        client_id = self.text("M365_CLIENT_ID", _GUID, guid)
        key_vault_url = self.https_url("KEY_VAULT_URL")
        secret_name = self.text("CLIENT_SECRET_NAME", _SECRET_NAME,
                                "a Key Vault secret name (letters, digits and dashes, up to 127)")
        verify_challenge = self.boolean("KEY_VAULT_VERIFY_CHALLENGE_RESOURCE")
        mi_client_id = self.raw("MANAGED_IDENTITY_CLIENT_ID")
        if mi_client_id and not _GUID.match(mi_client_id):
            self.problems.append(f"MANAGED_IDENTITY_CLIENT_ID is '{mi_client_id}', expected {guid}.")
        authority_host = self.https_url("AUTHORITY_HOST").rstrip("/")
        token_scope = self.text("TOKEN_SCOPE")
        if token_scope and not token_scope.endswith("/.default"):
            self.problems.append(
                f"TOKEN_SCOPE is '{token_scope}', expected a resource followed by '/.default' "
                "(app-only tokens need it), e.g. https://outlook.office365.com/.default."
            )
        mailboxes = self.mailboxes()
        schedule = self.schedule()
        container = self.text("BLOB_CONTAINER", _CONTAINER,
                              "3 to 63 lowercase letters, digits and single dashes")
        table = self.text("CHECKPOINT_TABLE", _TABLE,
                          "3 to 63 letters and digits, starting with a letter")
        storage = self.storage()
        imap_host = self.text("IMAP_HOST")
        if imap_host and ("/" in imap_host or ":" in imap_host or " " in imap_host):
            self.problems.append(f"IMAP_HOST is '{imap_host}', expected a host name alone "
                                 "(put the port in IMAP_PORT).")
        imap_port = self.integer("IMAP_PORT", 1, 65535)
        security = (self.raw("IMAP_SECURITY") or "").lower()
        if security not in ("tls", "starttls"):
            self.problems.append(f"IMAP_SECURITY is '{security}', expected tls or starttls.")
            security = "tls"
        ca_bundle = self.ca_bundle()
        concurrency = self.integer("MAX_CONCURRENT_MAILBOXES", 1, 64)
        batch = self.integer("FETCH_BATCH_SIZE", 1, 1000)
        uploads = self.integer("UPLOAD_CONCURRENCY", 1, 64)
        deadline = self.integer("POLL_DEADLINE_SECONDS", 10, 86_400)
        if self.problems:
            raise ConfigurationError(self.problems)
        return Settings(
            tenant_id=tenant_id,
            client_id=client_id,
            key_vault_url=key_vault_url,
            client_secret_name=secret_name,
            key_vault_verify_challenge_resource=verify_challenge,
            managed_identity_client_id=mi_client_id,
            authority_host=authority_host,
            token_scope=token_scope,
            mailboxes=mailboxes,
            poll_schedule=schedule,
            blob_container=container,
            checkpoint_table=table,
            storage=storage,
            imap_host=imap_host,
            imap_port=imap_port,
            imap_security="starttls" if security == "starttls" else "tls",
            ca_bundle=ca_bundle,
            max_concurrent_mailboxes=concurrency,
            fetch_batch_size=batch,
            upload_concurrency=uploads,
            poll_deadline_seconds=float(deadline),
        )

    def mailboxes(self) -> tuple[MailboxConfig, ...]:
        value = self.raw("MAILBOXES")
        if not value:
            return ()
        try:
            parsed = parse_mailboxes(value)
        except ValueError as e:
            self.problems.append(f"MAILBOXES is not valid: {e}")
            return ()
        return parsed

    def schedule(self) -> str:
        value = self.raw("POLL_SCHEDULE") or ""
        if value:
            fields = value.split()
            if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
                self.problems.append(
                    f"POLL_SCHEDULE is '{value}', expected an NCRONTAB expression with six fields "
                    "(second minute hour day month day-of-week), e.g. '0 */5 * * * *'."
                )
        return value

    def storage(self) -> StorageConnection:
        connection_string = self.raw(STORAGE)
        blob_uri = self.raw(f"{STORAGE}__blobServiceUri")
        table_uri = self.raw(f"{STORAGE}__tableServiceUri")
        queue_uri = self.raw(f"{STORAGE}__queueServiceUri")
        credential = self.raw(f"{STORAGE}__credential")
        client_id = self.raw(f"{STORAGE}__clientId")
        if connection_string:
            return StorageConnection(connection_string=Secret(connection_string))
        if not (blob_uri and table_uri):
            self.problems.append(
                f"{STORAGE} is not set: give a connection string in {STORAGE}, or the identity-based "
                f"{STORAGE}__blobServiceUri and {STORAGE}__tableServiceUri."
            )
            return StorageConnection()
        for name, uri in ((f"{STORAGE}__blobServiceUri", blob_uri),
                          (f"{STORAGE}__tableServiceUri", table_uri),
                          (f"{STORAGE}__queueServiceUri", queue_uri)):
            if uri and urlparse(uri).scheme not in ("https", "http"):
                self.problems.append(f"{name} is '{uri}', expected a URL.")
        if credential and credential.lower() != "managedidentity":
            self.problems.append(f"{STORAGE}__credential is '{credential}', expected managedidentity.")
        if client_id and not _GUID.match(client_id):
            self.problems.append(f"{STORAGE}__clientId is '{client_id}', expected a GUID.")
        return StorageConnection(
            blob_service_uri=blob_uri,
            table_service_uri=table_uri,
            queue_service_uri=queue_uri,
            managed_identity_client_id=client_id,
        )

    def ca_bundle(self) -> Path | None:
        value = self.raw("CA_BUNDLE")
        if not value:
            return None
        path = Path(value)
        if not path.is_file():
            self.problems.append(f"CA_BUNDLE is '{value}', but no such file exists.")
        return path


def parse_mailboxes(value: str) -> tuple[MailboxConfig, ...]:
    """Parse MAILBOXES: ``a@x.com, b@x.com:INBOX|Archive`` or a JSON list."""
    entries: list[MailboxConfig] = []
    if value.lstrip().startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"it looks like JSON but does not parse ({e.msg} at {e.pos}).") from e
        if not isinstance(items, list):
            raise ValueError("a JSON value must be a list.")
        for item in items:
            if isinstance(item, str):
                entries.append(MailboxConfig(item.strip()))
            elif isinstance(item, dict) and isinstance(item.get("address"), str):
                folders = item.get("folders", ["INBOX"])
                if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
                    raise ValueError(f"folders of {item['address']} must be a list of names.")
                entries.append(MailboxConfig(item["address"].strip(), tuple(folders) or ("INBOX",)))
            else:
                raise ValueError("each JSON entry must be an address or {\"address\", \"folders\"}.")
    else:
        for part in re.split(r"[;,\n]", value):
            if not part.strip():
                continue
            address, _, folder_text = part.strip().partition(":")
            folders = tuple(f.strip() for f in folder_text.split("|") if f.strip())
            entries.append(MailboxConfig(address.strip(), folders or ("INBOX",)))
    if not entries:
        raise ValueError("no mailbox is listed.")
    seen: set[str] = set()
    for entry in entries:
        if not _ADDRESS.match(entry.address):
            raise ValueError(f"'{entry.address}' is not an email address.")
        key = entry.address.lower()
        if key in seen:
            raise ValueError(f"{entry.address} is listed twice.")
        seen.add(key)
        for folder in entry.folders:
            if any(ord(c) < 32 for c in folder):
                raise ValueError(f"folder {folder!r} of {entry.address} has a control character.")
    return tuple(entries)
