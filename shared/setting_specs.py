"""The single list of settings the app reads: name, meaning, example, type, range and default.

Everything else derives from ``SETTINGS``: ``shared.settings`` reads and validates each setting
by its spec, ``PollOptions`` takes its defaults from it (``from_setting``), and the settings table
of docs/settings.md, ``local.settings.json.example`` and the Bicep app settings are checked
against it. A declaration with no I/O: any layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shared.clouds import CLOUDS

GLOBAL = CLOUDS["global"]
STORAGE = "MAIL_STORAGE"
AUTH_MODES = ("secret", "certificate", "federated")
SECURITIES = ("tls", "starttls")
# The key, in a dataclass field's metadata, of the setting the field is read from.
SETTING_FIELD = "setting"

Kind = Literal["text", "integer", "boolean", "choice"]


@dataclass(frozen=True)
class SettingSpec:
    """One setting the app reads: what it means, whether it must be set, its type and default.

    ``default`` is written as in app settings; ``low``/``high`` bound an integer, ``choices``
    list a choice's values.
    """

    name: str
    description: str
    example: str
    required: bool = False
    default: str | None = None
    group: str = "core"
    kind: Kind = "text"
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()


def _spec(name: str, description: str, example: str, *, required: bool = False,
          default: str | None = None, group: str = "core") -> SettingSpec:
    return SettingSpec(name, description, example, required, default, group)


def _choice(name: str, description: str, choices: tuple[str, ...], *, default: str,
            group: str = "core") -> SettingSpec:
    return SettingSpec(name, description, default, default=default, group=group, kind="choice",
                       choices=choices)


def _boolean(name: str, description: str, *, default: bool, group: str = "core") -> SettingSpec:
    text = "true" if default else "false"
    return SettingSpec(name, description, text, default=text, group=group, kind="boolean")


def _integer(name: str, description: str, *, default: int, low: int, high: int,
             group: str = "core") -> SettingSpec:
    return SettingSpec(name, description, str(default), default=str(default), group=group,
                       kind="integer", low=low, high=high)


SETTINGS: tuple[SettingSpec, ...] = (
    _spec("M365_TENANT_ID", "Directory (tenant) ID of the Entra ID tenant that owns the mailboxes.",
          "00000000-0000-0000-0000-000000000000", required=True),
    _spec("M365_CLIENT_ID", "Application (client) ID of the app registration granted IMAP.AccessAsApp.",
          "11111111-1111-1111-1111-111111111111", required=True),
    _choice("M365_CLOUD", "Microsoft 365 cloud: global, usgov (GCC High), usgovdod or china. Picks the "
            "sign-in host, token scope and IMAP/POP hosts; each can still be overridden.", tuple(CLOUDS),
            default="global"),
    _choice("AUTH_MODE", "How the app proves itself to Entra ID: secret (client secret in Key Vault), "
            "certificate (certificate in Key Vault) or federated (the managed identity, no secret).",
            AUTH_MODES, default="secret", group="auth"),
    _spec("KEY_VAULT_URL", "URL of the Key Vault holding the client secret or certificate "
          "(not needed with AUTH_MODE=federated).", "https://mailferry-kv.vault.azure.net/", group="auth"),
    _spec("CLIENT_SECRET_NAME", "Key Vault secret whose value is the client secret's Value "
          "(AUTH_MODE=secret).", "mailferry-client-secret", group="auth"),
    _spec("CLIENT_CERTIFICATE_NAME", "Key Vault certificate registered on the app (AUTH_MODE=certificate); "
          "its private key is read through the secret of the same name.", "mailferry-client-cert",
          group="auth"),
    _boolean("CLIENT_CERTIFICATE_SEND_CHAIN", "Send the certificate chain with each assertion (subject "
             "name and issuer authentication).", default=False, group="auth"),
    _spec("FEDERATED_TOKEN_AUDIENCE", "Audience of the managed identity token presented as the "
          "client assertion (AUTH_MODE=federated). Default from M365_CLOUD.", GLOBAL.federated_audience,
          group="auth"),
    _boolean("KEY_VAULT_VERIFY_CHALLENGE_RESOURCE",
             "Check that Key Vault's auth challenge names the vault's own domain. Leave true on Azure.",
             default=True, group="auth"),
    _spec("MANAGED_IDENTITY_CLIENT_ID",
          "Client ID of the user-assigned managed identity that reads Key Vault and storage.",
          "22222222-2222-2222-2222-222222222222", group="auth"),
    _spec("AUTHORITY_HOST", "Entra ID sign-in host. Default from M365_CLOUD.", GLOBAL.authority_host),
    _spec("TOKEN_SCOPE", "Scope of the app-only token the mail server accepts. Default from M365_CLOUD.",
          GLOBAL.token_scope),
    _spec("MAILBOXES",
          "Mailboxes to read, comma- or semicolon-separated; each may name folders after ':' "
          "separated by '|' (default INBOX). A JSON list of {address, folders, protocol, first_run} also "
          "works. "
          "Required unless MAILBOXES_SOURCE is table.",
          "ops@contoso.com, billing@contoso.com:INBOX|Invoices"),
    _choice("MAILBOXES_SOURCE", "setting (the MAILBOXES setting) or table (the mailbox registry in the "
            "checkpoint table, managed with `mailferry mailboxes`: for thousands of mailboxes).",
            ("setting", "table"), default="setting"),
    _choice("MAIL_PROTOCOL", "imap or pop3: how mailboxes are read unless a MAILBOXES entry says "
            "otherwise. POP3 sees the Inbox only.", ("imap", "pop3"), default="imap"),
    _spec("FIRST_RUN", "How much existing mail a folder's first poll takes: all, new (only mail "
          "arriving from then on) or since:YYYY-MM-DD (mail the server received on or after that "
          "day, UTC). A MAILBOXES JSON entry may set its own first_run. A folder already polled "
          "keeps the scope it started with.", "all", default="all"),
    _spec("AFTER_DELIVERY", "What happens to a message once its blob is stored: keep (read-only), seen "
          "(mark it read), move:<folder> (created if missing) or delete. POP3: keep or delete. A "
          "MAILBOXES JSON entry or folder may set its own (\"after_delivery\").", "keep", default="keep"),
    _spec("POLL_SCHEDULE", "NCRONTAB schedule of the poll timer (six fields, seconds first).",
          "0 */5 * * * *", required=True),
    _choice("POLL_MODE", "inline (the timer polls every mailbox) or fanout (the timer queues one message "
            "per mailbox and queue-triggered instances poll them).", ("inline", "fanout"), default="inline"),
    _spec("POLL_QUEUE", "Storage queue of the fan-out mode.", "mailferry-polls", default="mailferry-polls"),
    _spec("NOTIFY_QUEUE", "Storage queue (in the mail storage account) that gets one JSON notice per "
          "delivered message, schema mailferry.message.v1 (docs/downstream.md). Empty: no notices.",
          "mailferry-messages"),
    _boolean("SUMMARY_BLOBS", "Also write each message's summary as a .json blob beside its .eml.",
             default=False),
    _spec("BLOB_CONTAINER", "Blob container that receives one .eml blob per message.", "mail",
          default="mail"),
    _spec("CHECKPOINT_TABLE", "Table holding each folder's checkpoint and each mailbox's health.",
          "mailferrycheckpoints", default="mailferrycheckpoints"),
    _spec(STORAGE, "Connection string of the mail storage account (local runs). On Azure use the "
          "identity-based MAIL_STORAGE__* settings instead.", "UseDevelopmentStorage=true",
          group="storage"),
    _spec(f"{STORAGE}__blobServiceUri", "Blob endpoint of the mail storage account (identity-based).",
          "https://mailferrystore.blob.core.windows.net", group="storage"),
    _spec(f"{STORAGE}__tableServiceUri", "Table endpoint of the mail storage account (identity-based).",
          "https://mailferrystore.table.core.windows.net", group="storage"),
    _spec(f"{STORAGE}__queueServiceUri", "Queue endpoint of the mail storage account (identity-based).",
          "https://mailferrystore.queue.core.windows.net", group="storage"),
    _spec(f"{STORAGE}__credential", "'managedidentity' for identity-based storage connections.",
          "managedidentity", group="storage"),
    _spec(f"{STORAGE}__clientId", "Client ID of the user-assigned identity for the storage connection.",
          "22222222-2222-2222-2222-222222222222", group="storage"),
    _spec("IMAP_HOST", "IMAP server. Default from M365_CLOUD.", GLOBAL.mail_host),
    _integer("IMAP_PORT", "IMAP port.", default=993, low=1, high=65535),
    _choice("IMAP_SECURITY", "'tls' (implicit TLS, as on port 993) or 'starttls'.", SECURITIES,
            default="tls"),
    _spec("POP3_HOST", "POP3 server. Default from M365_CLOUD.", GLOBAL.mail_host),
    _integer("POP3_PORT", "POP3 port.", default=995, low=1, high=65535),
    _choice("POP3_SECURITY", "'tls' (implicit TLS, as on port 995) or 'starttls'.", SECURITIES,
            default="tls"),
    _spec("CA_BUNDLE", "PEM file of CAs to trust instead of the system's (private CAs, local stack).",
          "/etc/ssl/certs/ca-certificates.crt"),
    _integer("MAX_CONCURRENT_MAILBOXES", "How many mailboxes one run polls at once.", default=4, low=1,
             high=64),
    _integer("FETCH_BATCH_SIZE", "Messages fetched per IMAP command and checkpointed together.",
             default=100, low=1, high=1000),
    _integer("UPLOAD_CONCURRENCY", "Blob uploads in flight at once per mailbox.", default=16, low=1,
             high=64),
    _integer("LARGE_MESSAGE_BYTES", "Messages above this size are fetched and uploaded in pieces, so "
             "memory stays bounded.", default=16 * 1024 * 1024, low=1024 * 1024, high=1024 * 1024 * 1024),
    _integer("POLL_DEADLINE_SECONDS",
             "A run stops starting work after this many seconds; keep it below host.json functionTimeout.",
             default=480, low=10, high=86_400),
    _integer("IMAP_TIMEOUT_SECONDS",
             "Seconds an IMAP or POP3 read may wait for data; the same span judges a minimum pace "
             "(1 KiB/s), so a server trickling data is cut too. Reads never outlast the run's time box.",
             default=60, low=1, high=600),
)

SETTING_NAMES: frozenset[str] = frozenset(s.name for s in SETTINGS)
SPECS = {s.name: s for s in SETTINGS}


def integer_default(name: str) -> int:
    """The default of an integer setting, as a number."""
    spec = SPECS[name]
    if spec.kind != "integer" or spec.default is None:
        raise ValueError(f"{name} is not an integer setting with a default")
    return int(spec.default)


def from_setting(name: str) -> Any:
    """A dataclass field read from the integer setting ``name``, defaulting to the setting's default."""
    return field(default=integer_default(name), metadata={SETTING_FIELD: name})
