"""Typed settings, read once from a mapping (the environment on Functions) and validated together.

Each setting's type, range or choices, and default are in ``shared.setting_specs.SETTINGS``
(re-exported here); the reader takes them from there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from shared.clouds import CLOUDS, Cloud
from shared.error_text import quoted
from shared.errors import ConfigurationError
from shared.history_scope import ALL, FirstRunScope, parse_first_run
from shared.mailbox_list import (
    MailboxConfig,
    MailboxListError,
    MailProtocol,
    after_delivery_setting,
    parse_mailboxes,
)
from shared.model import PollOptions
from shared.ncrontab import ncrontab_problems
from shared.setting_specs import SETTING_NAMES, SETTINGS, SPECS, STORAGE, SettingSpec
from shared.storage_settings import StorageConnection, StorageSettingReader

_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_QUEUE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                   r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")

Security = Literal["tls", "starttls"]


@dataclass(frozen=True)
class MailServerAddress:
    """Where one protocol's server is and how to secure the connection."""

    host: str
    port: int
    security: Security


@dataclass(frozen=True)
class Credentials:
    """How the app authenticates to Entra ID."""

    mode: Literal["secret", "certificate", "federated"]
    key_vault_url: str | None
    secret_name: str | None
    certificate_name: str | None
    send_certificate_chain: bool
    federated_audience: str
    verify_challenge_resource: bool


@dataclass(frozen=True)
class Settings:
    """Everything mailferry needs to run, validated (defaults: ``shared.setting_specs``)."""

    tenant_id: str
    client_id: str
    mailboxes: tuple[MailboxConfig, ...]
    poll_schedule: str
    storage: StorageConnection
    credentials: Credentials
    cloud: Cloud
    managed_identity_client_id: str | None
    authority_host: str
    token_scope: str
    poll_mode: Literal["inline", "fanout"]
    # "table": the mailboxes come from the registry; ``mailboxes`` is then empty.
    mailboxes_source: Literal["setting", "table"]
    poll_queue: str
    notify_queue: str  # empty: no notices
    summary_blobs: bool
    blob_container: str
    checkpoint_table: str
    imap: MailServerAddress
    pop3: MailServerAddress
    ca_bundle: Path | None
    poll: PollOptions
    # IMAP_TIMEOUT_SECONDS: per read of the IMAP or POP3 connection, and its pace window.
    mail_timeout_seconds: float

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate every setting; raise one ConfigurationError naming each problem."""
        return _Reader(env).build()


class _Reader(StorageSettingReader):
    """Reads every setting into one Settings, collecting every problem instead of stopping."""

    def build(self) -> Settings:
        tenant_id = self.guid("M365_TENANT_ID")
        client_id = self.guid("M365_CLIENT_ID")
        cloud = CLOUDS[self.choice("M365_CLOUD")]
        mi_client_id = self.raw("MANAGED_IDENTITY_CLIENT_ID")
        if mi_client_id:
            self.guid("MANAGED_IDENTITY_CLIENT_ID")
        credentials = self.credentials(cloud, mi_client_id)
        authority_host = self.https_url("AUTHORITY_HOST",
                                        self.raw("AUTHORITY_HOST") or cloud.authority_host).rstrip("/")
        token_scope = self.raw("TOKEN_SCOPE") or cloud.token_scope
        if not token_scope.endswith("/.default"):
            self.problems.append(
                f"TOKEN_SCOPE is {quoted(token_scope)}, expected a resource followed by '/.default' "
                f"(app-only tokens need it), e.g. {cloud.token_scope}."
            )
        source = self.choice("MAILBOXES_SOURCE")
        mailboxes = self.mailboxes()
        if source == "setting" and not mailboxes and not self.env.get("MAILBOXES", "").strip():
            spec = SPECS["MAILBOXES"]
            self.problems.append(f"MAILBOXES is not set: {spec.description} Example: {spec.example}")
        if source == "table" and mailboxes:
            self.problems.append("MAILBOXES is set but MAILBOXES_SOURCE is table: the registry "
                                 "lists the mailboxes; remove MAILBOXES, or set MAILBOXES_SOURCE=setting.")
        schedule = self.schedule()
        poll_mode = self.choice("POLL_MODE")
        queue = self.text("POLL_QUEUE", _QUEUE, "3 to 63 lowercase letters, digits and single dashes")
        container = self.text("BLOB_CONTAINER", _CONTAINER,
                              "3 to 63 lowercase letters, digits and single dashes")
        table = self.text("CHECKPOINT_TABLE", _TABLE,
                          "3 to 63 letters and digits, starting with a letter")
        notify_queue = self.text("NOTIFY_QUEUE", _QUEUE, "3 to 63 lowercase letters, digits, single dashes")
        summary_blobs = self.boolean("SUMMARY_BLOBS")
        storage = self.storage(needs_queue=poll_mode == "fanout" or bool(notify_queue))
        if poll_mode == "fanout" and not (storage.connection_string or storage.queue_service_uri):
            self.problems.append(f"POLL_MODE is fanout but {STORAGE}__queueServiceUri is not set: the "
                                 "fan-out queue lives in the mail storage account.")
        if notify_queue and not (storage.connection_string or storage.queue_service_uri):
            self.problems.append(f"NOTIFY_QUEUE is set but {STORAGE}__queueServiceUri is not: set it too.")
        imap = self.server("IMAP", cloud)
        pop3 = self.server("POP3", cloud)
        ca_bundle = self.ca_bundle()
        mail_timeout = self.integer("IMAP_TIMEOUT_SECONDS")
        after_delivery, wrong = after_delivery_setting(self.raw("AFTER_DELIVERY") or "keep", mailboxes)
        self.problems += wrong
        poll = replace(self.options(PollOptions), first_run=self.first_run(mailboxes),
                       after_delivery=after_delivery)
        if self.problems:
            raise ConfigurationError(self.problems)
        return Settings(
            tenant_id=tenant_id,
            client_id=client_id,
            mailboxes=mailboxes,
            mailboxes_source="table" if source == "table" else "setting",
            poll_schedule=schedule,
            storage=storage,
            credentials=credentials,
            cloud=cloud,
            managed_identity_client_id=mi_client_id,
            authority_host=authority_host,
            token_scope=token_scope,
            poll_mode="fanout" if poll_mode == "fanout" else "inline",
            poll_queue=queue,
            notify_queue=notify_queue, summary_blobs=summary_blobs,
            blob_container=container,
            checkpoint_table=table,
            imap=imap,
            pop3=pop3,
            ca_bundle=ca_bundle,
            poll=poll,
            mail_timeout_seconds=float(mail_timeout),
        )

    def credentials(self, cloud: Cloud, mi_client_id: str | None) -> Credentials:
        mode = self.choice("AUTH_MODE")
        why = f"AUTH_MODE is {mode}"
        vault = None if mode == "federated" else self.require("KEY_VAULT_URL", why)
        self.https_url("KEY_VAULT_URL", vault)
        secret_name = certificate_name = None
        if mode == "secret":
            secret_name = self.require("CLIENT_SECRET_NAME", why)
            if secret_name:
                self.text("CLIENT_SECRET_NAME", _SECRET_NAME,
                          "a Key Vault secret name (letters, digits and dashes, up to 127)")
        if mode == "certificate":
            certificate_name = self.require("CLIENT_CERTIFICATE_NAME", why)
            if certificate_name:
                self.text("CLIENT_CERTIFICATE_NAME", _SECRET_NAME,
                          "a Key Vault certificate name (letters, digits and dashes, up to 127)")
        if mode == "federated" and not mi_client_id:
            self.problems.append(
                "MANAGED_IDENTITY_CLIENT_ID is not set but AUTH_MODE is federated: name the "
                "user-assigned managed identity that the app registration's federated credential trusts."
            )
        return Credentials(
            mode="certificate" if mode == "certificate" else "federated" if mode == "federated"
            else "secret",
            key_vault_url=vault,
            secret_name=secret_name,
            certificate_name=certificate_name,
            send_certificate_chain=self.boolean("CLIENT_CERTIFICATE_SEND_CHAIN"),
            federated_audience=self.raw("FEDERATED_TOKEN_AUDIENCE") or cloud.federated_audience,
            verify_challenge_resource=self.boolean("KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"),
        )

    def server(self, protocol: str, cloud: Cloud) -> MailServerAddress:
        host = self.raw(f"{protocol}_HOST") or cloud.mail_host
        if not _HOST.match(host):
            self.problems.append(f"{protocol}_HOST is {quoted(host)}, expected a host name alone, in "
                                 f"ASCII (xn-- for an international name); the port goes in {protocol}_PORT.")
        port = self.integer(f"{protocol}_PORT")
        security = self.choice(f"{protocol}_SECURITY")
        return MailServerAddress(host, port, "starttls" if security == "starttls" else "tls")

    def mailboxes(self) -> tuple[MailboxConfig, ...]:
        value = self.raw("MAILBOXES")
        if not value:
            return ()
        protocol = self.choice("MAIL_PROTOCOL")
        try:
            parsed = parse_mailboxes(value, default_protocol="pop3" if protocol == "pop3" else "imap")
        except MailboxListError as e:
            self.problems.append(f"MAILBOXES is not valid: {' '.join(e.problems)}")
            return ()
        return parsed

    def first_run(self, mailboxes: tuple[MailboxConfig, ...]) -> FirstRunScope:
        value = self.raw("FIRST_RUN") or "all"
        try:
            scope = parse_first_run(value)
        except ValueError as e:
            self.problems.append(f"FIRST_RUN is {e}.")
            return ALL
        pop3 = [m.address for m in mailboxes if m.protocol == "pop3" and m.first_run is None]
        if scope.kind == "since" and pop3:
            self.problems.append(
                f"FIRST_RUN is {quoted(value)}, but {', '.join(pop3[:3])}{' …' if len(pop3) > 3 else ''} "
                "is read over POP3, which gives no dates to choose messages by: give it "
                '"first_run": "new" (or "all") in MAILBOXES (JSON form), or set FIRST_RUN to all or new.')
        return scope

    def schedule(self) -> str:
        value = self.raw("POLL_SCHEDULE") or ""
        if value:
            # The timer trigger reads the setting as it is, so check it untrimmed.
            problems = ncrontab_problems(self.env.get("POLL_SCHEDULE", value))
            if problems:
                self.problems.append(f"POLL_SCHEDULE is {quoted(value)}: {'; '.join(problems)}.")
        return value

    def ca_bundle(self) -> Path | None:
        value = self.raw("CA_BUNDLE")
        if not value:
            return None
        path = Path(value)
        try:
            found = path.is_file()
        except (OSError, ValueError):  # a name too long for the file system, or a NUL in it
            found = False
        if not found:
            self.problems.append(f"CA_BUNDLE is {quoted(value)}, but no such file exists.")
        return path


__all__ = ["SETTINGS", "SETTING_NAMES", "STORAGE", "MailProtocol", "MailboxConfig", "SettingSpec",
           "Settings", "parse_mailboxes"]
