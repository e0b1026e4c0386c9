"""Timer to blob on the real stack: byte-for-byte delivery, exactly once, across crashes."""

from __future__ import annotations

import signal
import subprocess
import time
from email.message import EmailMessage
from urllib.parse import quote

import pytest

from devstack.azurite import ACCOUNT
from devstack.seed import demo_messages
from devstack.stack import Stack
from shared.adapters.blob import BLOCKS_IN_FLIGHT
from shared.adapters.table import TableStateStore
from shared.errors import CheckpointConflict
from shared.naming import blob_name
from shared.streamed import STREAM_CHUNK
from tests.integration.helpers import (
    break_poll_lease,
    cli_command,
    cli_environment,
    container,
    new_poller,
    poll,
    run_cli,
    stored_blobs,
)

pytestmark = pytest.mark.usefixtures("identity_endpoint")


def expected_blobs(stack: Stack, address: str, folder: str = "INBOX") -> dict[str, bytes]:
    uidvalidity = stack.mailbox_status(address, folder)["uidvalidity"]
    return {blob_name(address, folder, uidvalidity, uid): raw
            for uid, raw in stack.server_messages(address, folder).items()}


def simple_message(n: int, *, size: int = 200) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@fabrikam.com"
    msg["To"] = "ops@contoso.com"
    msg["Subject"] = f"message {n}"
    msg["Message-ID"] = f"<{n}.{time.time_ns()}@fabrikam.com>"
    msg.set_content(("x" * 70 + "\n") * max(1, size // 71))
    return msg.as_bytes()


def test_seeded_messages_arrive_byte_for_byte_and_a_second_poll_delivers_nothing(stack, new_mailbox):
    address = new_mailbox(folders=("Invoices/2024",))
    messages = demo_messages()
    stack.append_many(address, "INBOX", messages)
    stack.append_many(address, "Invoices/2024", messages[:2])
    env = stack.settings_env(f"{address}:INBOX|Invoices/2024")

    first = poll(env)
    assert first.failed == [], first.failed
    assert first.delivered == len(messages) + 2
    stored = stored_blobs(env)
    assert stored == expected_blobs(stack, address) | expected_blobs(stack, address, "Invoices/2024")

    second = poll(env)
    assert second.failed == [] and second.delivered == 0
    assert stored_blobs(env) == stored


def test_blob_properties_and_metadata(stack, new_mailbox):
    address = new_mailbox()
    stack.append(address, "INBOX", simple_message(1))
    env = stack.settings_env(address)
    poll(env)
    [blob] = list(container(env).list_blobs(include=["metadata"]))
    assert blob.content_settings.content_type == "message/rfc822"
    assert blob.metadata["mailbox"] == address and blob.metadata["folder"] == "INBOX"
    assert blob.metadata["uid"] == "1" and blob.metadata["message_id"].endswith("@fabrikam.com>")
    assert int(blob.metadata["size"]) == blob.size and blob.metadata["internal_date"]


def test_mail_arriving_between_runs_is_picked_up(stack, new_mailbox):
    address = new_mailbox()
    stack.append(address, "INBOX", simple_message(1))
    env = stack.settings_env(address)
    poller, settings = new_poller(env)
    assert poller.run(settings.mailboxes).delivered == 1
    stack.append(address, "INBOX", simple_message(2))
    stack.append(address, "INBOX", simple_message(3))
    assert poller.run(settings.mailboxes).delivered == 2
    assert stored_blobs(env) == expected_blobs(stack, address)


def test_poll_killed_mid_batch_then_rerun_delivers_every_message_exactly_once(stack, new_mailbox, tmp_path):
    address = new_mailbox()
    total = 400
    stack.append_many(address, "INBOX", (simple_message(n, size=3000) for n in range(total)))
    env = stack.settings_env(address) | {"FETCH_BATCH_SIZE": "20", "UPLOAD_CONCURRENCY": "2"}

    process = subprocess.Popen(cli_command("poll"), env=cli_environment(env), cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = container(env)
        deadline = time.monotonic() + 60
        written = 0
        while time.monotonic() < deadline:
            written = len(list(client.list_blobs())) if client.exists() else 0
            if written >= 30 or process.poll() is not None:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the poll finished before it could be killed; seed more mail"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    partial = len(stored_blobs(env))
    assert 0 < partial < total

    # The killed run still holds the mailbox's lease (up to a minute): a run at once leaves
    # the mailbox alone, and says why. Break the lease as an operator would, and rerun.
    early = run_cli(env, "poll", cwd=tmp_path)
    assert early.returncode == 0 and "another run holds its lease" in early.stdout, early.stderr
    assert len(stored_blobs(env)) == partial
    break_poll_lease(env["MAIL_STORAGE"], env["BLOB_CONTAINER"], address)
    rerun = subprocess.run(cli_command("poll"), env=cli_environment(env), cwd=tmp_path,
                           capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    stored = stored_blobs(env)
    assert len(stored) == total
    assert stored == expected_blobs(stack, address)


def test_uidvalidity_change_resyncs_without_delivering_twice(stack, new_mailbox):
    address = new_mailbox()
    with_id = [simple_message(n) for n in range(3)]
    without_id = EmailMessage()
    without_id["From"] = "sender@fabrikam.com"
    without_id["Subject"] = "no message id"
    without_id["Date"] = "Sat, 28 Nov 2026 10:00:00 +0000"
    without_id.set_content("body")
    stack.append_many(address, "INBOX", [*with_id, without_id.as_bytes()])
    env = stack.settings_env(address)
    assert poll(env).delivered == 4
    before = stored_blobs(env)

    old = stack.mailbox_status(address, "INBOX")["uidvalidity"]
    stack.set_uidvalidity(address, "INBOX", old + 1000)
    report = poll(env)
    result = report.mailboxes[0].folders[0]
    assert result.resynced and result.duplicates_skipped == 4 and report.delivered == 0
    assert stored_blobs(env) == before

    stack.append(address, "INBOX", simple_message(99))
    assert poll(env).delivered == 1
    new_names = set(stored_blobs(env)) - set(before)
    assert [n.split("/")[2] for n in new_names] == [str(old + 1000)]


def test_checkpoint_writes_are_etag_guarded(stack, new_mailbox):
    address = new_mailbox()
    stack.append(address, "INBOX", simple_message(1))
    env = stack.settings_env(address)
    poller, settings = new_poller(env)
    poller.run(settings.mailboxes)
    store = poller.checkpoints
    assert isinstance(store, TableStateStore)
    current = store.get_checkpoint(address, "INBOX")
    assert current is not None and current.last_uid == 1
    store.put_checkpoint(current)  # another writer moves the row on
    with pytest.raises(CheckpointConflict):
        store.put_checkpoint(current)


def test_health_rows_record_success_and_failure(stack, new_mailbox):
    good, refused = new_mailbox(), new_mailbox(granted=False)
    stack.append(good, "INBOX", simple_message(1))
    env = stack.settings_env(f"{good}, {refused}")
    poller, settings = new_poller(env)
    poller.run(settings.mailboxes)
    poller.run(settings.mailboxes)
    health = {h.mailbox: h for h in poller.health.list_health()}
    assert health[good].last_success_at is not None and health[good].delivered_total == 1
    assert health[refused].consecutive_failures == 2 and health[refused].failing_since
    assert "refused the app's token" in (health[refused].last_error or "")
    assert "Add-MailboxPermission" in (health[refused].last_error or "")


def test_a_large_message_is_streamed_from_one_fetch_byte_for_byte(stack, faults, new_mailbox):
    address = new_mailbox()
    big = EmailMessage()
    big["From"] = "sender@fabrikam.com"
    big["Subject"] = "large"
    big["Message-ID"] = "<large@fabrikam.com>"
    big.set_content("intro")
    big.add_attachment(bytes(range(256)) * (40 * 4096), maintype="application", subtype="octet-stream",
                       filename="big.bin")  # 40 MiB before base64
    stack.append_many(address, "INBOX", [simple_message(1), big.as_bytes(), simple_message(2)])
    env = faults.settings_env(address, storage=False) | {"LARGE_MESSAGE_BYTES": str(1024 * 1024)}
    report = poll(env)
    assert report.failed == [] and report.delivered == 3
    stored = stored_blobs(env)
    assert stored == expected_blobs(stack, address)
    faults.wait_until_closed(address)
    # One FETCH of sizes, then the small message before it, the large one whole (no
    # ranges: each would cost a round trip) and the one after it.
    assert faults.commands(address)["FETCH"] == 4
    [blob] = [b for b in container(env).list_blobs(include=["metadata"]) if b.size > 1024 * 1024]
    assert blob.metadata["message_id"] == "<large@fabrikam.com>"
    assert int(blob.metadata["size"]) == blob.size > 50 * 1024 * 1024


def test_a_large_message_whose_upload_fails_leaves_the_session_usable(stack, faults, new_mailbox):
    # Its blocks are refused: the poll stops there, and the rest of the message's FETCH
    # answer is read and dropped, so the session ends with a LOGOUT rather than a cut
    # connection. The next run stores it whole, once.
    address = new_mailbox()
    # More pieces than are staged at once, so the reading waits on a failing block.
    big = simple_message(1, size=(BLOCKS_IN_FLIGHT + 3) * STREAM_CHUNK)
    stack.append_many(address, "INBOX", [simple_message(0), big, simple_message(2)])
    env = faults.settings_env(address) | {"LARGE_MESSAGE_BYTES": str(1024 * 1024)}
    uidvalidity = stack.mailbox_status(address, "INBOX")["uidvalidity"]
    big_blob = quote(blob_name(address, "INBOX", uidvalidity, 2), safe="/~")
    faults.storage_error(service="blob", method="PUT", times=None, seconds=120,
                         path_prefix=f"/{ACCOUNT}/{env['BLOB_CONTAINER']}/{big_blob}")
    [result] = poll(env).mailboxes
    assert not result.ok and "in blocks" in (result.error or ""), result.error
    assert "delivered through UID 1;" in (result.error or "")
    faults.wait_until_closed(address)
    assert faults.connections(address).total == 1 and faults.commands(address)["LOGOUT"] == 1
    faults.clear()
    [again] = poll(env).mailboxes
    assert again.ok and again.complete, again.error
    assert stored_blobs(env) == expected_blobs(stack, address)


def test_blob_writes_are_create_only(stack, new_mailbox):
    from shared.adapters.blob import BlobMessageSink

    env = stack.settings_env(new_mailbox())
    sink = BlobMessageSink(container(env))
    sink.ensure_container()
    name = "a@b.c/Sent%20Items/1/0000000001.eml"
    assert sink.create(name, b"first", {"uid": "1"}) is True
    assert sink.create(name, b"second", {"uid": "1"}) is False
    assert container(env).download_blob(name).readall() == b"first"
    assert [b.name for b in container(env).list_blobs()] == [name]


def test_an_empty_poll_costs_two_imap_commands_per_folder_and_writes_nothing(stack, new_mailbox):
    from contextlib import contextmanager

    from shared.adapters.imap import ImapServer, ImapSession

    address = new_mailbox(folders=("Archive",))
    stack.append(address, "INBOX", simple_message(1))
    env = stack.settings_env(f"{address}:INBOX|Archive")
    poller, settings = new_poller(env)
    sessions: list[ImapSession] = []
    assert isinstance(poller.server, ImapServer)
    real: ImapServer = poller.server

    class Recording:
        """The real IMAP adapter, keeping each session to count its commands afterwards."""

        @contextmanager
        def open(self, address: str, token, **options):
            with real.open(address, token, **options) as session:
                sessions.append(session)
                yield session

    poller.server = Recording()
    poller.run(settings.mailboxes)
    blobs, tokens, checkpoints = stored_blobs(env), stack.token_request_count(), poller.checkpoints
    before = {c.folder: c.etag for c in checkpoints.list_checkpoints()}
    sessions.clear()
    report = poller.run(settings.mailboxes)
    assert report.failed == [] and report.delivered == 0
    [session] = sessions
    assert session.commands == 2 * 2  # EXAMINE and UID SEARCH for each of the two folders
    assert stored_blobs(env) == blobs
    assert stack.token_request_count() == tokens
    assert {c.folder: c.etag for c in checkpoints.list_checkpoints()} == before


def test_a_poll_sends_no_capability_command_once_logged_in(stack, faults, new_mailbox):
    # The capabilities read before login do for the whole session; asking again after login
    # costs every poll a round trip (what IMAPClient's search used to do).
    address = new_mailbox(folders=("Archive",))
    stack.append_many(address, "INBOX", [simple_message(n) for n in range(3)])
    env = faults.settings_env(address, storage=False) | {"MAILBOXES": f"{address}:INBOX|Archive"}
    poller, settings = new_poller(env)
    assert poller.run(settings.mailboxes).delivered == 3
    faults.wait_until_closed(address)
    commands = faults.commands(address)
    assert "CAPABILITY" not in commands, commands
    assert commands["AUTHENTICATE"] == 1 and commands["EXAMINE"] == 2 and commands["SEARCH"] == 2
