"""The one place that builds adapters from settings, once per process.

Warm Functions instances reuse the clients, the Key Vault secret and MSAL's token cache.
"""

from __future__ import annotations

import functools
import logging
import urllib.request
from collections.abc import Mapping
from typing import Any

import requests
from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient, ContainerClient, LinearRetry
from azure.storage.queue import QueueClient, TextBase64EncodePolicy
from requests.adapters import HTTPAdapter

from shared.adapters.action_table import TableActionStore
from shared.adapters.app_credentials import (
    CertificateCredential,
    FederatedCredential,
    SecretCredential,
)
from shared.adapters.blob import BlobMessageSink
from shared.adapters.entra import MsalTokenSource
from shared.adapters.imap import ImapServer
from shared.adapters.keyvault import KeyVault
from shared.adapters.lease import BlobLeaseStore
from shared.adapters.mailbox_table import TableMailboxRegistry
from shared.adapters.poll_queue import StoragePollQueue
from shared.adapters.pop3 import Pop3MailServer
from shared.adapters.table import TableStateStore
from shared.errors import ConfigurationError
from shared.fanout import ENQUEUE_CONCURRENCY, QueueWorker
from shared.naming import LEASE_SECONDS, lease_container_name
from shared.poll import Poller, PollOptions, SystemClock
from shared.ports import ClientCredential, ListedMailboxes, MailboxDirectory
from shared.settings import SETTING_NAMES, Settings

log = logging.getLogger("mailferry")

# Storage retries, set explicitly: the SDK's defaults (back-offs of 15, 18 and 24 s, and no
# bound on a stalled read) kept a poll going for minutes in silence during an outage. Here a
# 503 or a reset is retried three times, about 2 s apart, a connect gives up after 5 s and a
# response after 20 s, so an outage ends a run well inside its time box (measured: about
# 7 s for an unreachable account) and the next timer run resumes.
STORAGE_RETRY: dict[str, Any] = {
    "retry_policy": LinearRetry(backoff=2, retry_total=3, random_jitter_range=1),
    "connection_timeout": 5,
    "read_timeout": 20,
}
TABLE_RETRY: dict[str, Any] = {
    "retry_total": 3, "retry_backoff_factor": 0.5, "retry_backoff_max": 4,
    "connection_timeout": 5, "read_timeout": 20,
}


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validated settings from an environment; validated once per distinct configuration."""
    snapshot = tuple(sorted((k, v) for k, v in env.items() if k in SETTING_NAMES))
    return _settings_from(snapshot)


@functools.lru_cache(maxsize=8)
def _settings_from(snapshot: tuple[tuple[str, str], ...]) -> Settings:
    return Settings.from_mapping(dict(snapshot))


@functools.lru_cache(maxsize=8)
def get_poller(settings: Settings) -> Poller:
    """The process's poller for these settings, built on first use."""
    return build_poller(settings)


def build_poller(settings: Settings) -> Poller:
    """Build every adapter from settings; creates the container and table if missing."""
    verify = _verify(settings)
    identity = _identity(settings)
    tokens = build_token_source(settings, identity)
    container, table = _storage_clients(settings, identity, verify)
    sink = BlobMessageSink(container)
    sink.ensure_container()
    state = TableStateStore(table)
    state.ensure_table()
    server = ImapServer(settings.imap.host, settings.imap.port, security=settings.imap.security,
                        ca_bundle=settings.ca_bundle)
    options = PollOptions(
        max_concurrent_mailboxes=settings.max_concurrent_mailboxes,
        fetch_batch_size=settings.fetch_batch_size,
        upload_concurrency=settings.upload_concurrency,
        large_message_bytes=settings.large_message_bytes,
        deadline_seconds=settings.poll_deadline_seconds,
        after_delivery=settings.after_delivery,
    )
    pop3 = Pop3MailServer(settings.pop3.host, settings.pop3.port, security=settings.pop3.security,
                          ca_bundle=settings.ca_bundle)
    return Poller(tokens, server, sink, state, state, options, SystemClock(),
                  pop3=pop3, pop3_checkpoints=state, action_states=TableActionStore(table))


def build_client_credential(settings: Settings, identity: TokenCredential) -> ClientCredential:
    """The app's credential for Entra ID, by AUTH_MODE."""
    creds = settings.credentials
    if creds.mode == "federated":
        assert settings.managed_identity_client_id  # checked by Settings
        federation_identity = ManagedIdentityCredential(
            client_id=settings.managed_identity_client_id, connection_verify=_verify(settings))
        return FederatedCredential(federation_identity, creds.federated_audience,
                                   settings.managed_identity_client_id)
    assert creds.key_vault_url  # checked by Settings
    vault = KeyVault(creds.key_vault_url, identity,
                     verify_challenge_resource=creds.verify_challenge_resource,
                     ca_bundle=settings.ca_bundle)
    if creds.mode == "certificate":
        assert creds.certificate_name
        return CertificateCredential(vault, creds.certificate_name,
                                     send_chain=creds.send_certificate_chain)
    assert creds.secret_name
    return SecretCredential(vault, creds.secret_name)


def build_token_source(settings: Settings, identity: TokenCredential | None = None) -> MsalTokenSource:
    """MSAL for this app, tenant and cloud; nothing is fetched until the first token."""
    credential = build_client_credential(settings, identity or _identity(settings))
    return MsalTokenSource(
        tenant_id=settings.tenant_id, client_id=settings.client_id, credential=credential,
        authority_host=settings.authority_host, scope=settings.token_scope,
        ca_bundle=settings.ca_bundle)


def _verify(settings: Settings) -> str | bool:
    return str(settings.ca_bundle) if settings.ca_bundle else True


def _identity(settings: Settings) -> TokenCredential:
    """The Function App's identity (a user-assigned managed identity on Azure)."""
    return DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id,
                                  connection_verify=_verify(settings))


@functools.lru_cache(maxsize=8)
def get_mailbox_directory(settings: Settings) -> MailboxDirectory:
    """Where this process finds its mailboxes: the MAILBOXES setting or the registry."""
    if settings.mailboxes_source == "table":
        return build_mailbox_registry(settings)
    return ListedMailboxes(settings.mailboxes)


def build_mailbox_registry(settings: Settings) -> TableMailboxRegistry:
    """The mailbox registry, in the checkpoint table."""
    return TableMailboxRegistry(
        _storage_clients(settings, _identity(settings), _verify(settings))[1])


def build_state_store(settings: Settings) -> TableStateStore:
    """Only the checkpoint/health table, for read-only commands."""
    return TableStateStore(_storage_clients(settings, _identity(settings), _verify(settings))[1])


def build_action_store(settings: Settings) -> TableActionStore:
    """Only the after-delivery rows of the checkpoint table, for read-only commands."""
    return TableActionStore(_storage_clients(settings, _identity(settings), _verify(settings))[1])


def _storage_clients(settings: Settings, identity: TokenCredential,
                     verify: str | bool) -> tuple[ContainerClient, TableClient]:
    storage = settings.storage
    # Uploads run concurrently across mailboxes; requests' default pool of 10 connections
    # per host would make them queue and discard connections.
    transport = _http_transport(settings.max_concurrent_mailboxes * settings.upload_concurrency + 4)
    if storage.connection_string is not None:
        text = storage.connection_string.reveal()
        blob_service = BlobServiceClient.from_connection_string(
            text, transport=transport, connection_verify=verify, **STORAGE_RETRY)
        table = TableClient.from_connection_string(
            text, settings.checkpoint_table, connection_verify=verify, **TABLE_RETRY)
    else:
        credential = _storage_credential(settings, identity, verify)
        assert storage.blob_service_uri and storage.table_service_uri  # checked by Settings
        blob_service = BlobServiceClient(storage.blob_service_uri, credential=credential,
                                         transport=transport, connection_verify=verify,
                                         **STORAGE_RETRY)
        table = TableClient(storage.table_service_uri, settings.checkpoint_table,
                            credential=credential, connection_verify=verify, **TABLE_RETRY)
    return blob_service.get_container_client(settings.blob_container), table


@functools.lru_cache(maxsize=8)
def get_poll_queue(settings: Settings) -> StoragePollQueue:
    """The process's fan-out queue for these settings, built on first use."""
    return build_poll_queue(settings)


@functools.lru_cache(maxsize=8)
def get_queue_worker(settings: Settings) -> QueueWorker:
    """The process's fan-out worker (leases, health) for these settings, built on first use."""
    return build_queue_worker(settings)


def build_poll_queue(settings: Settings) -> StoragePollQueue:
    """The fan-out queue; messages base64-encoded, as the queue trigger expects by default."""
    storage = settings.storage
    verify = _verify(settings)
    encoding = TextBase64EncodePolicy()
    transport = _http_transport(ENQUEUE_CONCURRENCY + 4)
    if storage.connection_string is not None:
        client = QueueClient.from_connection_string(
            storage.connection_string.reveal(), settings.poll_queue,
            message_encode_policy=encoding, connection_verify=verify, transport=transport,
            **STORAGE_RETRY)
    elif storage.queue_service_uri:
        client = QueueClient(storage.queue_service_uri, settings.poll_queue,
                             credential=_storage_credential(settings, _identity(settings), verify),
                             message_encode_policy=encoding, connection_verify=verify,
                             transport=transport, **STORAGE_RETRY)
    else:
        raise ConfigurationError([
            "MAIL_STORAGE__queueServiceUri is not set but the fan-out queue lives in the mail "
            "storage account: set it, e.g. https://mailferrystore.queue.core.windows.net"])
    return StoragePollQueue(client)


def build_lease_store(settings: Settings, *, lease_seconds: int = LEASE_SECONDS) -> BlobLeaseStore:
    """The per-mailbox poll leases, in the container beside the mail container."""
    storage = settings.storage
    verify = _verify(settings)
    if storage.connection_string is not None:
        service = BlobServiceClient.from_connection_string(
            storage.connection_string.reveal(), connection_verify=verify, **STORAGE_RETRY)
    else:
        assert storage.blob_service_uri  # checked by Settings
        service = BlobServiceClient(storage.blob_service_uri,
                                    credential=_storage_credential(settings, _identity(settings), verify),
                                    connection_verify=verify, **STORAGE_RETRY)
    container = service.get_container_client(lease_container_name(settings.blob_container))
    return BlobLeaseStore(container, duration_seconds=lease_seconds)


def build_queue_worker(settings: Settings, *, lease_seconds: int = LEASE_SECONDS) -> QueueWorker:
    """Leases and the health table for queued polls (the lease container is made on first use)."""
    leases = build_lease_store(settings, lease_seconds=lease_seconds)
    table = _storage_clients(settings, _identity(settings), _verify(settings))[1]
    return QueueWorker(leases, TableStateStore(table), SystemClock())


def _http_transport(pool_size: int) -> RequestsTransport:
    """An HTTP transport for storage clients with room for ``pool_size`` requests at once."""
    session = requests.Session()
    # With trust_env, requests looks for ~/.netrc and proxy variables on every request: a
    # tenth of an upload's CPU. Proxies from the environment are read here, once, instead.
    session.trust_env = False
    session.proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # A transport given to a client keeps its own timeouts: the client's are not passed on.
    return RequestsTransport(session=session, session_owner=False,
                             connection_timeout=STORAGE_RETRY["connection_timeout"],
                             read_timeout=STORAGE_RETRY["read_timeout"])


def _storage_credential(settings: Settings, identity: TokenCredential,
                        verify: str | bool) -> TokenCredential:
    """As for blob and table: the storage connection's own identity, or the app's."""
    client_id = settings.storage.managed_identity_client_id
    if client_id:
        return ManagedIdentityCredential(client_id=client_id, connection_verify=verify)
    return identity
