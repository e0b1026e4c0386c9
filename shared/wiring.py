"""The composition root: the one place that builds the app's parts from settings.

``components_for(settings)`` keeps one ``Components`` per configuration for the process, so
warm Functions instances reuse the clients, the Key Vault secret and MSAL's token cache.
Each part is built on first use: a command that lists mailboxes never signs in to Entra ID.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.adapters.action_table import TableActionStore
from shared.adapters.app_credentials import (
    CertificateCredential,
    FederatedCredential,
    SecretCredential,
)
from shared.adapters.blob import BlobMessageSink
from shared.adapters.delivered_blobs import BlobDeliveredMessages
from shared.adapters.entra import MsalTokenSource
from shared.adapters.imap import ImapProbe, ImapServer
from shared.adapters.keyvault import KeyVault
from shared.adapters.lease import BlobLeaseStore
from shared.adapters.mailbox_table import TableMailboxRegistry
from shared.adapters.notice_queue import StorageNoticeQueue
from shared.adapters.poll_queue import StoragePollQueue
from shared.adapters.pop3 import Pop3MailServer
from shared.adapters.reachability import ConnectionProbe
from shared.adapters.table import TableStateStore
from shared.adapters.tls import sdk_transport_options
from shared.built_once import built_once
from shared.fanout import QueueWorker
from shared.mailbox_list import MailProtocol
from shared.notices import AnnouncingSink
from shared.poll import Poller, SystemClock
from shared.ports import ClientCredential, ListedMailboxes, MailboxDirectory, MessageSink
from shared.settings import SETTING_NAMES, Settings
from shared.storage_clients import StorageClients


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validated settings from an environment; validated once per distinct configuration."""
    snapshot = tuple(sorted((k, v) for k, v in env.items() if k in SETTING_NAMES))
    return _settings_from(snapshot)


@functools.lru_cache(maxsize=8)
def _settings_from(snapshot: tuple[tuple[str, str], ...]) -> Settings:
    return Settings.from_mapping(dict(snapshot))


class Components:
    """Everything the app is made of for one configuration, each part built once, on first use.

    ``components_for`` gives the process's shared set; ``Components(settings)`` a set of its
    own (the doctor, which must see Key Vault and Entra ID as they are now, and tests).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._verify: str | bool = str(settings.ca_bundle) if settings.ca_bundle else True
        self._managed_identities: dict[str, TokenCredential] = {}
        self._identities_lock = threading.Lock()

    # -- identities and credentials ------------------------------------------------------------
    @built_once
    def identity(self) -> TokenCredential:
        """The Function App's identity (a user-assigned managed identity on Azure)."""
        return DefaultAzureCredential(managed_identity_client_id=self.settings.managed_identity_client_id,
                                      connection_verify=self._verify,
                                      **sdk_transport_options(self._verify))

    def managed_identity(self, client_id: str) -> TokenCredential:
        """The managed identity with this client ID: one credential, and token cache, per ID."""
        with self._identities_lock:
            if client_id not in self._managed_identities:
                self._managed_identities[client_id] = ManagedIdentityCredential(
                    client_id=client_id, connection_verify=self._verify,
                    **sdk_transport_options(self._verify))
            return self._managed_identities[client_id]

    def _storage_identity(self) -> TokenCredential:
        """For blob, table and queue: the storage connection's own identity, or the app's."""
        client_id = self.settings.storage.managed_identity_client_id
        return self.managed_identity(client_id) if client_id else self.identity

    @built_once
    def client_credential(self) -> ClientCredential:
        """The app's credential for Entra ID, by AUTH_MODE."""
        settings, creds = self.settings, self.settings.credentials
        if creds.mode == "federated":
            assert settings.managed_identity_client_id  # checked by Settings
            return FederatedCredential(self.managed_identity(settings.managed_identity_client_id),
                                       creds.federated_audience, settings.managed_identity_client_id)
        assert creds.key_vault_url  # checked by Settings
        vault = KeyVault(creds.key_vault_url, self.identity,
                         verify_challenge_resource=creds.verify_challenge_resource,
                         ca_bundle=settings.ca_bundle)
        if creds.mode == "certificate":
            assert creds.certificate_name
            return CertificateCredential(vault, creds.certificate_name,
                                         send_chain=creds.send_certificate_chain)
        assert creds.secret_name
        return SecretCredential(vault, creds.secret_name)

    @built_once
    def tokens(self) -> MsalTokenSource:
        """MSAL for this app, tenant and cloud; nothing is fetched until the first token."""
        settings = self.settings
        return MsalTokenSource(
            tenant_id=settings.tenant_id, client_id=settings.client_id,
            credential=self.client_credential, authority_host=settings.authority_host,
            scope=settings.token_scope, ca_bundle=settings.ca_bundle)

    # -- storage ---------------------------------------------------------------------------------
    @built_once
    def storage(self) -> StorageClients:
        """The mail storage account's clients, one of each."""
        settings, poll = self.settings, self.settings.poll
        return StorageClients(
            settings.storage, container=settings.blob_container, table=settings.checkpoint_table,
            queue=settings.poll_queue, credential=self._storage_identity, verify=self._verify,
            # Uploads run concurrently across mailboxes; requests' default pool of 10
            # connections per host would make them queue and discard connections.
            upload_connections=poll.max_concurrent_mailboxes * poll.upload_concurrency + 4)

    @built_once
    def state(self) -> TableStateStore:
        """Checkpoints and health rows (the table is created by ``poller``, not here)."""
        return TableStateStore(self.storage.table)

    @built_once
    def action_states(self) -> TableActionStore:
        """How far the after-delivery actions went in each folder (in the checkpoint table)."""
        return TableActionStore(self.storage.table)

    @built_once
    def mailbox_registry(self) -> TableMailboxRegistry:
        """The mailbox registry, in the checkpoint table."""
        return TableMailboxRegistry(self.storage.table)

    @built_once
    def mailbox_directory(self) -> MailboxDirectory:
        """Where this process finds its mailboxes: the MAILBOXES setting or the registry."""
        if self.settings.mailboxes_source == "table":
            return self.mailbox_registry
        return ListedMailboxes(self.settings.mailboxes)

    # -- what the triggers and commands run ----------------------------------------------------
    @built_once
    def poller(self) -> Poller:
        """Everything a poll needs; creates the container and table if missing."""
        sink = BlobMessageSink(self.storage.container)
        sink.ensure_container()
        self.state.ensure_table()
        return Poller(self.tokens, self._imap_server(), self._announcing(sink), self.state, self.state,
                      self.settings.poll, SystemClock(), pop3=self._pop3_server(),
                      pop3_checkpoints=self.state, leases=self.leases, action_states=self.action_states)

    def _announcing(self, sink: MessageSink) -> MessageSink:
        """The sink, describing and announcing each message if NOTIFY_QUEUE or SUMMARY_BLOBS asks."""
        settings, poll = self.settings, self.settings.poll
        if not (settings.notify_queue or settings.summary_blobs):
            return sink
        queue = StorageNoticeQueue(self.storage.queue_client(
            settings.notify_queue, connections=poll.max_concurrent_mailboxes * poll.upload_concurrency + 4,
        )) if settings.notify_queue else None
        container = self.storage.container
        return AnnouncingSink(sink, BlobDeliveredMessages(container), container=container.container_name,
                              container_url=container.url, queue=queue, summary_blobs=settings.summary_blobs)

    @built_once
    def poll_queue(self) -> StoragePollQueue:
        """The fan-out queue."""
        return StoragePollQueue(self.storage.queue)

    @built_once
    def leases(self) -> BlobLeaseStore:
        """The per-mailbox poll leases (the lease container is made on first use)."""
        return BlobLeaseStore(self.storage.lease_container)

    @built_once
    def queue_worker(self) -> QueueWorker:
        """Leases and health for queued polls."""
        return QueueWorker(self.leases, self.state, SystemClock())

    # -- probes for the doctor: new for each check, with the doctor's time limit -----------------
    def imap_probe(self, *, timeout: float) -> ImapProbe:
        """The steps of an IMAP login, one at a time."""
        return ImapProbe(self._imap_server(timeout))

    def pop3_server(self, *, timeout: float) -> Pop3MailServer:
        """The POP3 server, to try a login."""
        return self._pop3_server(timeout)

    def connection_probe(self, protocol: MailProtocol, *, timeout: float) -> ConnectionProbe:
        """TCP and TLS to the server of ``protocol``, each checked alone."""
        address = self.settings.imap if protocol == "imap" else self.settings.pop3
        return ConnectionProbe(address.host, address.port, implicit_tls=address.security == "tls",
                               ca_bundle=self.settings.ca_bundle, timeout=timeout)

    def _imap_server(self, timeout: float | None = None) -> ImapServer:
        imap = self.settings.imap
        return ImapServer(imap.host, imap.port, security=imap.security,
                          ca_bundle=self.settings.ca_bundle,
                          timeout=timeout or self.settings.mail_timeout_seconds)

    def _pop3_server(self, timeout: float | None = None) -> Pop3MailServer:
        pop3 = self.settings.pop3
        return Pop3MailServer(pop3.host, pop3.port, security=pop3.security,
                              ca_bundle=self.settings.ca_bundle,
                              timeout=timeout or self.settings.mail_timeout_seconds)


_components_lock = threading.Lock()


def components_for(settings: Settings) -> Components:
    """The process's components for these settings: built once, shared by every invocation."""
    with _components_lock:
        return _shared_components(settings)


@functools.lru_cache(maxsize=8)
def _shared_components(settings: Settings) -> Components:
    return Components(settings)
