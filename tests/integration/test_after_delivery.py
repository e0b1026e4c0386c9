"""After delivery on the real stack: seen, move and delete act on stored messages once; folders by
pattern; POP3 deletes committed by QUIT; throttling, MOVE-less servers and fan-out keep working."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime

import pytest

from devstack.faults import FaultFront
from devstack.stack import Stack
from shared.entry import run_queue_poll
from shared.fanout import poll_message
from tests.integration.helpers import (
    cli_command,
    cli_environment,
    container,
    new_poller,
    poll,
    run_cli,
    stored_blobs,
)
from tests.integration.mail_view import (
    break_lease,
    folder_ids,
    folder_view,
    inspector,
    numbered,
    stored_ids,
)

pytestmark = pytest.mark.usefixtures("identity_endpoint")

SEEN = b"\\Seen"


@pytest.mark.parametrize("action", ["seen", "move:Archive/mailferry", "delete"])
def test_a_poll_delivers_and_acts_and_a_second_poll_does_neither(stack, new_mailbox, action):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n, "once") for n in range(12)))
    env = stack.settings_env(address) | {"AFTER_DELIVERY": action, "FETCH_BATCH_SIZE": "5"}
    [first] = poll(env).mailboxes
    assert first.ok and first.delivered == 12 and first.acted == 12, first
    stored = stored_ids(env)
    assert set(stored.values()) == {1} and len(stored) == 12
    inbox = folder_view(stack, address, "INBOX")
    if action == "seen":
        assert len(inbox) == 12 and all(SEEN in flags for _, flags in inbox.values())
    else:
        assert inbox == {}
    if action.startswith("move:"):
        assert folder_ids(stack, address, "Archive/mailferry") == stored
    [second] = poll(env).mailboxes
    assert second.ok and second.delivered == 0 and second.acted == 0
    assert stored_ids(env) == stored
    assert folder_view(stack, address, "INBOX") == inbox


def test_keep_leaves_every_message_unseen(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n, "keep") for n in range(3)))
    env = stack.settings_env(address)
    assert poll(env).delivered == 3
    assert all(SEEN not in flags for _, flags in folder_view(stack, address, "INBOX").values())


def test_without_move_a_move_goes_through_copy_store_and_uid_expunge(stack, faults, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n, "nomove") for n in range(8)))
    client = inspector(stack, address)  # another client flags a message deleted, unexpunged
    client.select_folder("INBOX")
    client.add_flags([8], [b"\\Deleted"])
    client.logout()
    faults.hide_move(address, times=None, seconds=300)
    env = faults.settings_env(address, storage=False) | {"AFTER_DELIVERY": "move:Archive",
                                                          "FETCH_BATCH_SIZE": "3"}
    [result] = poll(env).mailboxes
    assert result.ok and result.acted == 8, result
    commands = faults.commands(address)
    assert commands.get("MOVE", 0) == 0 and commands["COPY"] >= 3 and commands["EXPUNGE"] >= 3
    assert folder_view(stack, address, "INBOX") == {}
    assert folder_ids(stack, address, "Archive") == stored_ids(env)


@pytest.mark.parametrize("cut", ["STORE", "EXPUNGE"])
def test_a_move_without_move_cut_after_its_copy_is_not_copied_twice(stack, faults, new_mailbox, cut):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n, f"cut{cut}") for n in range(6)))
    faults.hide_move(address, times=None, seconds=300)
    faults.bye(address, on=cut, after_commands=0)
    env = faults.settings_env(address, storage=False) | {"AFTER_DELIVERY": "move:Archive"}
    [cut_short] = poll(env).mailboxes
    assert len(stored_blobs(env)) == 6
    if not cut_short.ok:  # the run gave up after the cut instead of reconnecting within itself
        assert len(folder_view(stack, address, "Archive")) == 6  # copied, not yet removed
    [repaired] = poll(env).mailboxes
    assert repaired.ok, repaired
    assert folder_view(stack, address, "INBOX") == {}
    assert folder_ids(stack, address, "Archive") == stored_ids(env)
    assert set(folder_ids(stack, address, "Archive").values()) == {1}


def test_a_throttled_move_costs_the_mailbox_a_delay_and_nothing_else(stack, faults, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n, "throttle") for n in range(5)))
    faults.throttle(address, on="MOVE", backoff_ms=1000)
    env = faults.settings_env(address, storage=False) | {"AFTER_DELIVERY": "move:Archive"}
    [throttled] = poll(env).mailboxes
    assert throttled.error_type == "MailboxThrottled" and throttled.delivered == 5
    assert len(folder_view(stack, address, "INBOX")) == 5
    # No poll of the mailbox before the server's time is up (a second, here).
    assert throttled.throttled_until is not None
    time.sleep(max(0.0, (throttled.throttled_until - datetime.now(UTC)).total_seconds()) + 0.2)
    [later] = poll(env).mailboxes
    assert later.ok and later.acted == 5 and folder_view(stack, address, "INBOX") == {}
    assert folder_ids(stack, address, "Archive") == stored_ids(env)


def test_a_queued_poll_acts_under_its_lease(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n, "fanout") for n in range(4)))
    env = stack.settings_env(address) | {"AFTER_DELIVERY": "delete", "POLL_MODE": "fanout",
                                         "POLL_QUEUE": "polls-after-delivery"}
    result = run_queue_poll(poll_message(address), env=env)
    assert result is not None and result.ok and result.acted == 4
    assert folder_view(stack, address, "INBOX") == {} and len(stored_blobs(env)) == 4


# Exchange's folders for a new mailbox, plus nested, non-ASCII and quoted ones.
EXCHANGE_FOLDERS = ("Archive", "Calendar", "Contacts", "Conversation History", "Deleted Items", "Drafts",
                    "Files", "Journal", "Junk Email", "Notes", "Outbox", "Sent Items", "Sync Issues",
                    "Sync Issues/Conflicts", "Sync Issues/Local Failures", "Sync Issues/Server Failures",
                    "Tasks", "Projekte/Übersicht", "Projekte/Übersicht/2024", "日本語", 'Q"uote & co')
POLLED = {"INBOX", "Archive", "Sent Items", "Projekte/Übersicht", "Projekte/Übersicht/2024", "日本語",
          'Q"uote & co'}


def test_every_folder_by_default_and_one_created_later_is_picked_up_one_gone_is_noted(
        stack, new_mailbox, tmp_path):
    address = new_mailbox(folders=EXCHANGE_FOLDERS)
    for number, folder in enumerate(("INBOX", *EXCHANGE_FOLDERS)):
        stack.append(address, folder, numbered(number, "folders"))
    env = stack.settings_env(json.dumps([{"address": address, "folders": ["*"]}]))
    [first] = poll(env).mailboxes
    assert first.ok and {f.folder for f in first.folders} == POLLED, first
    assert first.delivered == len(POLLED)
    stored_folders = {b.metadata["folder"] for b in container(env).list_blobs(include=["metadata"])}
    assert len(stored_folders) == len(POLLED)

    stack.create_folder(address, "Later/Neu")
    stack.append(address, "Later/Neu", numbered(99, "later"))
    client = inspector(stack, address)
    client.delete_folder("日本語")
    client.logout()
    [second] = poll(env).mailboxes
    assert second.ok and second.delivered == 1 and second.folder_errors == []
    assert [f.folder for f in second.folders_gone] == ["日本語"]
    poller, _ = new_poller(env)
    [health] = [h for h in poller.health.list_health() if h.mailbox == address]
    assert "日本語 (gone since" in (health.folders_gone or "") and not health.folder_errors
    status = run_cli(env, "status", cwd=tmp_path)
    assert "folders gone from the server" in status.stdout and "日本語" in status.stdout


def pop3_env(stack: Stack, address: str, action: str, front: FaultFront | None = None) -> dict[str, str]:
    entry = json.dumps([{"address": address, "protocol": "pop3", "after_delivery": action}])
    if front is not None:
        return front.settings_env(entry, storage=False)
    return stack.settings_env(entry) | {"POP3_HOST": "127.0.0.1", "POP3_PORT": str(stack.pop3s_port)}


def test_pop3_delete_removes_messages_whose_blobs_exist_and_only_those(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n, "pop") for n in range(6)))
    keep_env = pop3_env(stack, address, "keep")
    assert poll(keep_env).delivered == 6
    name, removed = sorted(stored_blobs(keep_env).items())[0]
    container(keep_env).delete_blob(name)  # e.g. removed by a lifecycle rule
    env = keep_env | {"MAILBOXES": json.dumps([{"address": address, "protocol": "pop3",
                                                 "after_delivery": "delete"}])}
    [result] = poll(env).mailboxes
    assert result.ok and result.acted == 5, result
    [(left, _)] = folder_view(stack, address, "INBOX").values()
    assert left == removed and len(stored_blobs(env)) == 5
    [again] = poll(env).mailboxes
    assert again.delivered == 0 and again.acted == 0 and len(folder_view(stack, address, "INBOX")) == 1


def test_pop3_delete_killed_before_quit_deletes_nothing_and_the_next_run_finds_the_blobs(
        stack, faults, new_mailbox, tmp_path):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n, "popkill") for n in range(5)))
    env = pop3_env(stack, address, "delete", faults)
    stall = faults.stall(address, on="DELE", duration=20, protocol="pop3")
    process = subprocess.Popen(cli_command("poll"), env=cli_environment(env), cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        faults.wait_for_event(stall, timeout=60)  # the run has sent a DELE and waits for it
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    faults.clear()
    break_lease(env, address)
    assert len(folder_view(stack, address, "INBOX")) == 5
    blobs = stored_blobs(env)
    assert len(blobs) == 5
    [rerun] = poll(env).mailboxes
    assert rerun.ok and rerun.delivered == 0 and rerun.acted == 5, rerun
    assert folder_view(stack, address, "INBOX") == {} and stored_blobs(env) == blobs


def test_status_shows_what_is_pending_per_folder(stack, new_mailbox, tmp_path):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n, "status") for n in range(5)))
    env = stack.settings_env(address)
    assert poll(env).delivered == 5  # kept: delivered, nothing acted on
    moving = env | {"AFTER_DELIVERY": "move:Archive"}
    before = run_cli(moving, "status", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert "After delivery" in before.stdout and "up to 5 (UIDs 1-5)" in before.stdout
    assert poll(moving).mailboxes[0].acted == 5
    after = run_cli(moving, "status", cwd=tmp_path)
    assert "5 of 5" in after.stdout and "up to" not in after.stdout


def test_doctor_checks_each_action_and_creates_a_missing_move_target(stack, faults, new_mailbox, tmp_path):
    address = new_mailbox()
    entry = [{"address": address, "folders": ["*", {"folder": "INBOX", "after_delivery": "delete"}],
              "after_delivery": "move:Done/mailferry"}]
    faults.hide_move(address, times=None, seconds=120)
    env = faults.settings_env(json.dumps(entry), storage=False)
    result = run_cli(env, "doctor", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    assert steps["after delivery: delete"]["status"] == "ok"
    move = steps["after delivery: move:Done/mailferry"]
    assert move["status"] == "ok" and "no MOVE offered" in move["detail"] and "now created" in move["detail"]
    assert steps["folders by pattern"]["detail"].startswith("* | INBOX select 1 folder(s): INBOX")
    client = inspector(stack, address)
    try:
        assert client.folder_exists("Done/mailferry")
    finally:
        client.logout()


def test_after_a_uidvalidity_reset_messages_delivered_before_are_moved_not_delivered_again(
        stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", (numbered(n, "reset") for n in range(4)))
    env = stack.settings_env(address)
    assert poll(env).delivered == 4  # kept
    blobs = stored_blobs(env)
    stack.set_uidvalidity(address, "INBOX", stack.mailbox_status(address, "INBOX")["uidvalidity"] + 500)
    [result] = poll(env | {"AFTER_DELIVERY": "move:Archive"}).mailboxes
    assert result.ok and result.delivered == 0 and result.folders[0].duplicates_skipped == 4
    assert result.acted == 4 and folder_view(stack, address, "INBOX") == {}
    assert stored_blobs(env) == blobs and folder_ids(stack, address, "Archive") == stored_ids(env)
