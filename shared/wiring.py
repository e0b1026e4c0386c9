"""The one place that builds adapters from settings, once per process.

Warm Functions instances reuse the clients, the Key Vault secret and MSAL's token cache.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

import requests
from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient, ContainerClient
from requests.adapters import HTTPAdapter

from shared.adapters.blob import BlobMessageSink
from shared.adapters.entra import MsalTokenSource
from shared.adapters.imap import ImapServer
from shared.adapters.keyvault import KeyVaultSecretSource
from shared.adapters.table import TableStateStore
from shared.poll import Poller, PollOptions, SystemClock
from shared.settings import SETTING_NAMES, Settings

log = logging.getLogger("mailferry")


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
    verify: str | bool = str(settings.ca_bundle) if settings.ca_bundle else True
    identity = DefaultAzureCredential(
        managed_identity_client_id=settings.managed_identity_client_id, connection_verify=verify)
    secrets = KeyVaultSecretSource(
        settings.key_vault_url, settings.client_secret_name, identity,
        verify_challenge_resource=settings.key_vault_verify_challenge_resource,
        ca_bundle=settings.ca_bundle)
    tokens = MsalTokenSource(
        tenant_id=settings.tenant_id, client_id=settings.client_id, secrets=secrets,
        authority_host=settings.authority_host, scope=settings.token_scope,
        ca_bundle=settings.ca_bundle)
    container, table = _storage_clients(settings, identity, verify)
    sink = BlobMessageSink(container)
    sink.ensure_container()
    state = TableStateStore(table)
    state.ensure_table()
    server = ImapServer(settings.imap_host, settings.imap_port, security=settings.imap_security,
                        ca_bundle=settings.ca_bundle)
    options = PollOptions(
        max_concurrent_mailboxes=settings.max_concurrent_mailboxes,
        fetch_batch_size=settings.fetch_batch_size,
        upload_concurrency=settings.upload_concurrency,
        deadline_seconds=settings.poll_deadline_seconds,
    )
    return Poller(tokens, server, sink, state, state, options, SystemClock())


def build_state_store(settings: Settings) -> TableStateStore:
    """Only the checkpoint/health table, for read-only commands."""
    verify: str | bool = str(settings.ca_bundle) if settings.ca_bundle else True
    identity = DefaultAzureCredential(
        managed_identity_client_id=settings.managed_identity_client_id, connection_verify=verify)
    return TableStateStore(_storage_clients(settings, identity, verify)[1])


def _storage_clients(settings: Settings, identity: TokenCredential,
                     verify: str | bool) -> tuple[ContainerClient, TableClient]:
    storage = settings.storage
    # Uploads run concurrently across mailboxes; requests' default pool of 10 connections
    # per host would make them queue and discard connections.
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=settings.max_concurrent_mailboxes
                          * settings.upload_concurrency + 4)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    transport = RequestsTransport(session=session, session_owner=False)
    if storage.connection_string is not None:
        text = storage.connection_string.reveal()
        blob_service = BlobServiceClient.from_connection_string(
            text, transport=transport, connection_verify=verify)
        table = TableClient.from_connection_string(
            text, settings.checkpoint_table, connection_verify=verify)
    else:
        credential: TokenCredential = identity
        if storage.managed_identity_client_id:
            credential = ManagedIdentityCredential(client_id=storage.managed_identity_client_id,
                                                   connection_verify=verify)
        assert storage.blob_service_uri and storage.table_service_uri  # checked by Settings
        blob_service = BlobServiceClient(storage.blob_service_uri, credential=credential,
                                         transport=transport, connection_verify=verify)
        table = TableClient(storage.table_service_uri, settings.checkpoint_table,
                            credential=credential, connection_verify=verify)
    return blob_service.get_container_client(settings.blob_container), table
