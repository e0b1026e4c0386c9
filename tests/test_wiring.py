"""The composition root: one set of parts per configuration, each built once and shared.

Building a storage or identity client does no I/O, so these run without the local stack; the
poller (which creates the container and table) is exercised by the integration tests.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.adapters.reachability import ConnectionProbe
from shared.adapters.storage_transport import PooledTransport
from shared.built_once import built_once
from shared.errors import ConfigurationError, FailureKind, MailServerError
from shared.naming import lease_container_name
from shared.settings import Settings
from shared.storage_clients import STORAGE_RETRY, http_transport
from shared.wiring import Components, components_for

GOOD = {
    "M365_TENANT_ID": "00000000-0000-0000-0000-000000000001",
    "M365_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
    "KEY_VAULT_URL": "https://kv.vault.azure.net/",
    "CLIENT_SECRET_NAME": "mailferry-secret",
    "MAILBOXES": "ops@contoso.com",
    "POLL_SCHEDULE": "0 */5 * * * *",
    "MAIL_STORAGE": "UseDevelopmentStorage=true",
}
IDENTITY = {k: v for k, v in GOOD.items() if k != "MAIL_STORAGE"} | {
    "MAIL_STORAGE__blobServiceUri": "https://acct.blob.core.windows.net",
    "MAIL_STORAGE__tableServiceUri": "https://acct.table.core.windows.net",
    "MAIL_STORAGE__queueServiceUri": "https://acct.queue.core.windows.net",
    "MAIL_STORAGE__credential": "managedidentity",
}
MI = "00000000-0000-0000-0000-000000000003"


def components(env: dict[str, str]) -> Components:
    return Components(Settings.from_mapping(env))


def test_the_process_keeps_one_set_of_parts_per_configuration():
    settings = Settings.from_mapping(GOOD)
    shared = components_for(settings)
    assert components_for(Settings.from_mapping(dict(GOOD))) is shared
    assert components_for(Settings.from_mapping(GOOD | {"BLOB_CONTAINER": "other"})) is not shared
    assert Components(settings) is not shared  # a set of its own, as the doctor takes
    assert shared.poll_queue is shared.poll_queue and shared.state is shared.state


def test_blob_table_and_queue_share_the_apps_one_identity():
    parts = components(IDENTITY)
    assert isinstance(parts.identity, DefaultAzureCredential)
    storage = parts.storage
    assert storage.blob_service.credential is parts.identity
    assert storage.table.credential is parts.identity
    assert storage.queue.credential is parts.identity


def test_a_managed_identity_named_twice_is_one_credential():
    parts = components(IDENTITY | {"MAIL_STORAGE__clientId": MI, "AUTH_MODE": "federated",
                                   "MANAGED_IDENTITY_CLIENT_ID": MI})
    credential = parts.storage.table.credential
    assert isinstance(credential, ManagedIdentityCredential)
    assert parts.storage.blob_service.credential is credential
    assert parts.managed_identity(MI) is credential
    assert parts.managed_identity("00000000-0000-0000-0000-000000000004") is not credential


def test_every_table_part_uses_one_table_client():
    parts = components(GOOD | {"POLL_MODE": "fanout"})
    table = parts.storage.table
    assert table.table_name == "mailferrycheckpoints"
    assert parts.storage.table is table
    assert parts.queue_worker.health is parts.state
    assert parts.queue_worker.leases is parts.leases


def test_the_mail_and_lease_containers_share_one_blob_service_and_its_connections():
    parts = components(GOOD | {"BLOB_CONTAINER": "inbound"})
    storage = parts.storage
    assert storage.container.container_name == "inbound"
    assert storage.lease_container.container_name == lease_container_name("inbound")
    transport = storage.blob_service._pipeline._transport
    wrappers: list[Any] = [storage.container._pipeline._transport,
                           storage.lease_container._pipeline._transport]
    assert all(wrapper._transport is transport for wrapper in wrappers)


def test_the_blob_pool_has_room_for_every_upload_of_a_run():
    parts = components(GOOD | {"MAX_CONCURRENT_MAILBOXES": "3", "UPLOAD_CONCURRENCY": "5"})
    transport: Any = parts.storage.blob_service._pipeline._transport
    assert isinstance(transport, PooledTransport)
    assert transport.pool_size == 3 * 5 + 4
    assert parts.storage.blob_service._config.retry_policy is STORAGE_RETRY["retry_policy"]


def test_the_table_goes_through_the_pooled_transport_with_the_storage_timeouts():
    parts = components(GOOD | {"MAX_CONCURRENT_MAILBOXES": "3", "UPLOAD_CONCURRENCY": "5"})
    transport: Any = parts.storage.table._client._client._pipeline._transport
    assert isinstance(transport, PooledTransport)
    assert transport._timeout == (STORAGE_RETRY["connection_timeout"], STORAGE_RETRY["read_timeout"])
    assert transport.pool_size == 3 * 5 + 4


def test_the_storage_transport_keeps_its_timeouts_and_reads_the_environment_once():
    transport = http_transport(7)
    assert transport.session.trust_env is False
    assert transport.session.adapters["https://"]._pool_maxsize == 7
    assert transport.session.adapters["http://"] is transport.session.adapters["https://"]
    assert (transport.connection_config.timeout, transport.connection_config.read_timeout) == (5, 20)


def test_the_queue_names_its_missing_endpoint_with_identity_based_storage():
    parts = components({k: v for k, v in IDENTITY.items() if k != "MAIL_STORAGE__queueServiceUri"})
    with pytest.raises(ConfigurationError) as caught:
        _ = parts.poll_queue
    [problem] = caught.value.problems
    assert problem.startswith("MAIL_STORAGE__queueServiceUri is not set but the fan-out queue")
    assert "https://mailferrystore.queue.core.windows.net" in problem


def test_clients_from_a_connection_string_name_what_the_settings_name():
    parts = components(GOOD | {"POLL_QUEUE": "polls-x", "CHECKPOINT_TABLE": "checkpointsx"})
    assert parts.storage.queue.queue_name == "polls-x"
    assert parts.storage.table.table_name == "checkpointsx"
    assert parts.storage.blob_service.account_name == "devstoreaccount1"


def test_a_part_is_built_once_when_threads_ask_for_it_together():
    class Parts:
        def __init__(self) -> None:
            self.builds = 0

        @built_once
        def part(self) -> object:
            self.builds += 1
            time.sleep(0.05)  # widens the window in which a second thread would build again
            return object()

    parts = Parts()
    start = threading.Barrier(8)
    seen: list[object] = []

    def ask() -> None:
        start.wait()
        seen.append(parts.part)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(seen) == 8 and all(p is seen[0] for p in seen)
    assert parts.builds == 1


def test_a_part_whose_build_failed_is_built_again_next_time():
    class Parts:
        def __init__(self) -> None:
            self.attempts = 0

        @built_once
        def part(self) -> int:
            self.attempts += 1
            if self.attempts == 1:
                raise ConnectionError("storage unreachable")
            return self.attempts

    parts = Parts()
    with pytest.raises(ConnectionError):
        _ = parts.part
    assert parts.part == 2 and parts.part == 2


def test_the_doctors_tcp_probe_names_a_refused_connection():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    probe = ConnectionProbe("127.0.0.1", port, implicit_tls=True, ca_bundle=None, timeout=5)
    with pytest.raises(MailServerError) as caught:
        probe.tcp()
    assert caught.value.kind is FailureKind.CONNECT_FAILED
    assert str(caught.value).startswith("ConnectionRefusedError: ")


def test_the_doctor_probes_the_server_of_each_protocol():
    parts = components(GOOD | {"IMAP_HOST": "imap.example.net", "POP3_PORT": "1995",
                               "POP3_SECURITY": "starttls"})
    imap = parts.connection_probe("imap", timeout=1)
    pop3 = parts.connection_probe("pop3", timeout=1)
    assert (imap.host, imap.port, imap.implicit_tls) == ("imap.example.net", 993, True)
    assert (pop3.host, pop3.port, pop3.implicit_tls) == ("outlook.office365.com", 1995, False)


def test_every_storage_client_trusts_the_ca_bundle(tmp_path):
    """CA_BUNDLE reaches the requests themselves: a client's own transport ignores the client's
    connection_verify, and trust_env is off, so it must be the transport's."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not read until a request is made", encoding="utf-8")
    parts = components(IDENTITY | {"CA_BUNDLE": str(bundle)})
    storage = parts.storage
    blob: Any = storage.blob_service._pipeline._transport
    queue: Any = storage.queue._pipeline._transport
    table: Any = storage.table._client._client._pipeline._transport
    notices: Any = storage.queue_client("notices", connections=4)._pipeline._transport
    assert [blob.verify, queue.verify, notices.verify, table.verify] == [str(bundle)] * 4
