"""Large POP3 messages on the real stack: read in pieces and staged as blocks, so memory
stays bounded; byte for byte against the IMAP view of the same maildir, and a connection
cut in the middle of one leaves nothing behind."""

from __future__ import annotations

import pytest

from devstack.faults import FaultFront
from devstack.stack import Stack
from tests.integration.fault_runs import run_measured, seed_maildir
from tests.integration.helpers import cli_command, cli_environment, container, poll, stored_blobs
from tests.integration.test_pop3 import expected_pop3_blobs, settings_env

pytestmark = pytest.mark.usefixtures("identity_endpoint")

LARGE = {"LARGE_MESSAGE_BYTES": str(1024 * 1024)}  # the smallest the setting takes


def dotted_message(n: int, size: int) -> bytes:
    """About ``size`` bytes of what dot-stuffing must get right: lines that start with one
    or two dots, lines of only a dot, blank lines, and lines far longer than any read."""
    head = (f"From: a@fabrikam.com\r\nTo: ops@contoso.com\r\nSubject: large {n}\r\n"
            f"Message-ID: <large{n}@fabrikam.com>\r\n\r\n").encode()
    lines = [b".leading dot\r\n", b"..two dots\r\n", b".\r\n", b"\r\n", b"plain line\r\n",
             b"." + b"L" * 300_000 + b"\r\n", b"..\r\n"]
    block = b"".join(lines)
    return head + block * (size // len(block) + 1)


def large_blobs(env: dict[str, str]) -> list[str]:
    """Blobs committed from staged blocks (one Put Blob leaves no committed block list)."""
    blobs = container(env)
    return sorted(b.name for b in blobs.list_blobs()
                  if blobs.get_blob_client(b.name).get_block_list("committed")[0])


def test_large_pop3_messages_are_streamed_byte_for_byte(stack: Stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [b"Subject: small\r\n\r\nhi\r\n.\r\n",
                                         dotted_message(1, 6 * 1024 * 1024),
                                         dotted_message(2, 3 * 1024 * 1024)])
    env = settings_env(stack, (address, "pop3")) | LARGE
    report = poll(env)
    assert report.failed == [] and report.delivered == 3
    expected = expected_pop3_blobs(stack, address)
    assert stored_blobs(env) == expected
    big = sorted(name for name, raw in expected.items() if len(raw) > 1024 * 1024)
    assert large_blobs(env) == big
    for blob in container(env).list_blobs(include=["metadata"]):
        assert int(blob.metadata["size"]) == blob.size
        assert blob.metadata["dedup_key"].startswith("v2-")


def test_a_pop3_connection_cut_inside_a_large_message_stores_nothing_partial(
        stack: Stack, faults: FaultFront, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [dotted_message(1, 6 * 1024 * 1024)])
    env = faults.settings_env(address, storage=False) | LARGE | {"MAIL_PROTOCOL": "pop3"}
    # Every attempt of this run is cut after 5 MiB: most of the message was staged each time.
    faults.reset(address, on="RETR", in_literal=True, at_byte=5 * 1024 * 1024, times=50,
                 protocol="pop3")
    [cut] = poll(env).mailboxes
    assert not cut.ok and cut.delivered == 0, cut.error
    assert faults.connections(address, "pop3").total >= 2  # it did reconnect and try again
    assert stored_blobs(env) == {}  # the blocks staged before each cut were never committed
    faults.clear()
    [again] = poll(env).mailboxes
    assert again.ok and again.delivered == 1, again.error
    assert stored_blobs(env) == expected_pop3_blobs(stack, address)


def test_a_100_mb_pop3_message_is_delivered_in_bounded_memory(stack: Stack, new_mailbox, tmp_path):
    small, large = new_mailbox(), new_mailbox()
    seed_maildir(stack, small, [dotted_message(0, 64 * 1024)])
    seed_maildir(stack, large, [dotted_message(1, 100 * 1000 * 1000)])
    peaks = {}
    for address in (small, large):
        env = settings_env(stack, (address, "pop3"))
        code, errors, peaks[address] = run_measured(cli_command("poll"), cli_environment(env),
                                                    tmp_path, 300)
        assert code == 0, errors
        assert stored_blobs(env) == expected_pop3_blobs(stack, address)
    # The same process on a small message is the reference: what the large one adds is the
    # pieces in flight (read whole, it added more than 300 MB).
    assert peaks[large] - peaks[small] < 64, peaks
