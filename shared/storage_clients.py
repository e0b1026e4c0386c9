"""The mail storage account's clients: blob, table and queue, each built once from one connection.

A connection string (local runs) or the service endpoints with an identity (Azure): the choice is
made in one place, ``StorageClients._client``, for every client.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient, ContainerClient, LinearRetry
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from shared.adapters.shared_key import sorted_headers_key
from shared.adapters.storage_transport import PooledTransport
from shared.adapters.tls import mount_shared_contexts
from shared.built_once import built_once
from shared.errors import ConfigurationError
from shared.fanout import ENQUEUE_CONCURRENCY
from shared.naming import lease_container_name
from shared.setting_specs import SPECS, STORAGE
from shared.storage_settings import StorageConnection

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
}

# What each service holds, for the error naming a missing endpoint.
_HOLDS = {"blob": "mail container", "table": "checkpoint table", "queue": "fan-out queue"}

Client = TypeVar("Client", BlobServiceClient, TableClient, QueueClient)


class StorageClients:
    """The clients of the mail storage account, each built on first use and then shared."""

    def __init__(self, connection: StorageConnection, *, container: str, table: str, queue: str,
                 credential: Callable[[], TokenCredential], verify: str | bool,
                 upload_connections: int) -> None:
        """``credential`` is asked for only with endpoints; ``upload_connections`` sizes the blob pool."""
        self._connection = connection
        self._names = {"container": container, "table": table, "queue": queue}
        self._credential = credential
        self._verify = verify
        self._upload_connections = upload_connections

    @built_once
    def blob_service(self) -> BlobServiceClient:
        """The blob service, for the mail container and the lease container."""
        transport = pooled_transport(self._upload_connections, verify=self._verify)
        service = self._client(BlobServiceClient, "blob", transport=transport, **STORAGE_RETRY)
        key = sorted_headers_key(service.credential)
        if key is None:
            return service
        # An account key: the same key, signed with less client CPU per request.
        return self._client(BlobServiceClient, "blob", transport=transport, credential=key,
                            **STORAGE_RETRY)

    @built_once
    def container(self) -> ContainerClient:
        """The container that receives one blob per message."""
        return self.blob_service.get_container_client(self._names["container"])

    @built_once
    def lease_container(self) -> ContainerClient:
        """The container of the per-mailbox poll leases, beside the mail container."""
        return self.blob_service.get_container_client(lease_container_name(self._names["container"]))

    @built_once
    def table(self) -> TableClient:
        """The checkpoint table: checkpoints, health rows and the mailbox registry."""
        # The blobs' transport, for the same reason: through the SDK's default one, a table
        # request cost 2.7-3.0 ms of client CPU against Azurite, through this one 1.6-1.8 ms.
        # A poll makes four or more: health read, checkpoint read and writes, health write.
        return self._client(TableClient, "table", table_name=self._names["table"],
                            transport=pooled_transport(self._upload_connections, verify=self._verify),
                            **TABLE_RETRY)

    @built_once
    def queue(self) -> QueueClient:
        """The fan-out queue; messages base64-encoded, as the queue trigger expects by default."""
        return self._client(QueueClient, "queue", queue_name=self._names["queue"],
                            message_encode_policy=TextBase64EncodePolicy(),
                            transport=pooled_transport(ENQUEUE_CONCURRENCY + 4, verify=self._verify),
                            **STORAGE_RETRY)

    def queue_client(self, name: str, *, connections: int) -> QueueClient:
        """Another queue of the mail account (the notices), with room for ``connections`` requests."""
        return self._client(QueueClient, "queue", queue_name=name,
                            transport=pooled_transport(connections, verify=self._verify), **STORAGE_RETRY)

    def _client(self, kind: type[Client], service: str, **options: Any) -> Client:
        """The connection string when there is one, else the service's endpoint and the identity."""
        if self._connection.connection_string is not None:
            return kind.from_connection_string(self._connection.connection_string.reveal(),
                                               connection_verify=self._verify, **options)
        return kind(self._endpoint(service), credential=self._storage_credential,
                    connection_verify=self._verify, **options)

    @built_once
    def _storage_credential(self) -> TokenCredential:
        return self._credential()

    def _endpoint(self, service: str) -> str:
        endpoints = {"blob": self._connection.blob_service_uri,
                     "table": self._connection.table_service_uri,
                     "queue": self._connection.queue_service_uri}
        endpoint = endpoints[service]
        if not endpoint:
            name = f"{STORAGE}__{service}ServiceUri"
            raise ConfigurationError([
                f"{name} is not set but the {_HOLDS[service]} lives in the mail storage account: set "
                f"it, e.g. {SPECS[name].example}"])
        return endpoint


def http_transport(pool_size: int, *, verify: str | bool = True) -> RequestsTransport:
    """An HTTP transport for storage clients with room for ``pool_size`` requests at once.

    ``verify``: True, or the CA bundle to trust.
    """
    session = requests.Session()
    # With trust_env, requests looks for ~/.netrc and proxy variables on every request: a
    # tenth of an upload's CPU. Proxies from the environment are read here, once, instead.
    session.trust_env = False
    session.proxies = _environment_proxies()
    mount_shared_contexts(session, pool_connections=4, pool_maxsize=pool_size)
    # A transport given to a client keeps its own timeouts and CA bundle: the client's
    # connection_timeout, read_timeout and connection_verify are not passed on.
    return RequestsTransport(session=session, session_owner=False, connection_verify=verify,
                             connection_timeout=STORAGE_RETRY["connection_timeout"],
                             read_timeout=STORAGE_RETRY["read_timeout"])


def pooled_transport(pool_size: int, *, verify: str | bool = True) -> HttpTransport:  # type: ignore[type-arg]
    """The blob, table and queue clients' transport: kept-alive connections with less client
    CPU per request than requests or urllib3 (``shared.adapters.storage_transport``); the
    requests transport behind it for downloads, and for everything when the environment names
    a proxy, which only requests is set up to use here."""
    fallback: HttpTransport = http_transport(pool_size, verify=verify)  # type: ignore[type-arg]
    if _environment_proxies():
        return fallback
    return PooledTransport(pool_size=pool_size, verify=verify,
                           connection_timeout=STORAGE_RETRY["connection_timeout"],
                           read_timeout=STORAGE_RETRY["read_timeout"], fallback=fallback)


def _environment_proxies() -> dict[str, str]:
    return {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
