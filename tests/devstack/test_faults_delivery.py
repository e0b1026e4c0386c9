"""mailferry, unchanged and with its normal settings, delivers through the fronts when no
fault is armed: IMAP and POP3 through the mail fronts, blobs and checkpoints through the
storage fronts."""

from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient

from devstack.faults import FaultFront
from devstack.stack import Stack
from shared.wiring import components_for, load_settings
from tests.devstack.raw_clients import message

pytestmark = pytest.mark.usefixtures("clean_environ", "managed_identity_env")


def _stored(faults: FaultFront, env: dict[str, str]) -> list[bytes]:
    # Read back around the fronts, from Azurite itself.
    with BlobServiceClient.from_connection_string(faults.stack.storage_connection_string) as service:
        container = service.get_container_client(env["BLOB_CONTAINER"])
        return sorted(container.download_blob(b.name).readall() for b in container.list_blobs())


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_poll_through_the_fronts_delivers_every_message_byte_for_byte(
        stack: Stack, faults: FaultFront, new_mailbox, protocol):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [message(n, lines=20 + n) for n in range(25)])
    env = faults.settings_env(address) | {"MAIL_PROTOCOL": protocol}
    assert env["IMAP_PORT"] == str(faults.imap_port) and env["POP3_PORT"] == str(faults.pop3_port)
    assert f"BlobEndpoint=http://127.0.0.1:{faults.ports.blob}/" in env["MAIL_STORAGE"]

    settings = load_settings(env)
    report = components_for(settings).poller.run(settings.mailboxes)

    assert report.failed == [], report.failed
    assert report.delivered == 25
    assert _stored(faults, env) == sorted(stack.server_messages(address, "INBOX").values())
    # Everything went through the fronts, and none of them misbehaved.
    verb = "FETCH" if protocol == "imap" else "RETR"
    assert faults.commands(address, protocol).get(verb, 0) >= 1
    assert faults.connections(address, protocol).peak == 1
    assert faults.storage_requests("blob") >= 25 and faults.storage_requests("table") >= 1
    assert faults.events() == []

    second = components_for(settings).poller.run(settings.mailboxes)
    assert second.failed == [] and second.delivered == 0
