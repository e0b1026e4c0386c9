"""The mailbox registry (MAILBOXES_SOURCE=table) on the real stack: the CLI manages it, the
timer polls or queues what it lists."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from azure.functions.timer import TimerRequest

from devstack.azurite import ACCOUNT
from devstack.stack import Stack
from shared.errors import StorageError
from shared.mailbox_list import parse_mailboxes
from shared.settings import Settings
from shared.wiring import Components
from tests.integration.helpers import WorkerContext, indexed_functions, run_cli, stored_blobs
from tests.integration.test_fanout import queue_client

pytestmark = pytest.mark.usefixtures("identity_endpoint")


def registry_env(stack: Stack, **extra: str) -> dict[str, str]:
    env = stack.settings_env("unused@contoso.com") | {"MAILBOXES_SOURCE": "table",
                                                      "CHECKPOINT_TABLE": f"reg{uuid.uuid4().hex[:12]}"}
    del env["MAILBOXES"]
    return env | extra


def test_the_cli_manages_the_registry_and_a_poll_reads_what_it_lists(stack, new_mailbox, tmp_path):
    first, second = new_mailbox(), new_mailbox(folders=("Archive",))
    stack.append(first, "INBOX", b"Subject: one\r\n\r\nx\r\n")
    stack.append(second, "Archive", b"Subject: two\r\n\r\ny\r\n")
    env = registry_env(stack)
    assert run_cli(env, "poll", cwd=tmp_path).returncode == 0  # an empty registry is no error
    added = run_cli(env, "mailboxes", "add", first, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    csv = tmp_path / "more.csv"
    csv.write_text(f"address,folders,protocol\n{second},INBOX|Archive,imap\n")
    assert run_cli(env, "mailboxes", "import", str(csv), cwd=tmp_path).returncode == 0
    listed = run_cli(env, "mailboxes", "list", cwd=tmp_path)
    assert first in listed.stdout and second in listed.stdout and "2 mailbox(es)" in listed.stdout
    polled = run_cli(env, "poll", cwd=tmp_path)
    assert polled.returncode == 0, polled.stderr
    assert len(stored_blobs(env)) == 2
    assert run_cli(env, "mailboxes", "remove", second, cwd=tmp_path).returncode == 0
    assert run_cli(env, "mailboxes", "remove", second, cwd=tmp_path).returncode == 1
    assert [m.address for m in Components(Settings.from_mapping(env)).mailbox_registry.list_mailboxes()] == [first]


def test_a_bad_csv_names_each_bad_line_and_registers_nothing(stack, tmp_path):
    env = registry_env(stack)
    csv = tmp_path / "bad.csv"
    csv.write_text("ok@contoso.com,INBOX\nnot-an-address,INBOX\nfine@contoso.com,INBOX||\n"
                   "ok@contoso.com,Archive\n")
    result = run_cli(env, "mailboxes", "import", str(csv), cwd=tmp_path)
    assert result.returncode == 2
    for line in ("line 2", "line 3", "line 4"):
        assert line in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert Components(Settings.from_mapping(env)).mailbox_registry.list_mailboxes() == []


def test_ten_thousand_registered_mailboxes_are_each_queued_once_by_one_timer_run(
        stack, monkeypatch, clean_environ, tmp_path):
    env = registry_env(stack, POLL_MODE="fanout", POLL_QUEUE=f"polls-{uuid.uuid4().hex[:12]}")
    addresses = [f"box{n:05d}@contoso.com" for n in range(10_000)]
    csv = tmp_path / "many.csv"
    csv.write_text("".join(f"{a}\n" for a in addresses))
    imported = run_cli(env, "mailboxes", "import", str(csv), cwd=tmp_path, timeout=300)
    assert imported.returncode == 0, imported.stderr
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    indexed_functions()["poll_mailboxes"].get_user_function()(TimerRequest(past_due=False),
                                                              WorkerContext())
    seconds = time.monotonic() - started
    queued: list[str] = []
    queue = queue_client(env)
    while True:
        page = list(queue.receive_messages(messages_per_page=32, visibility_timeout=300,
                                           max_messages=32))
        if not page:
            break
        queued.extend(json.loads(m.content)["mailbox"] for m in page)
    assert sorted(queued) == addresses
    print(f"queued 10,000 poll messages in {seconds:.1f} s ({10_000 / seconds:.0f}/s)")


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_transaction_whose_connection_drops_once_is_sent_again(stack, faults, when):
    env = registry_env(stack) | {"MAIL_STORAGE": faults.storage_connection_string}
    registry = Components(Settings.from_mapping(env)).mailbox_registry
    addresses = [f"drop{n:03d}@contoso.com" for n in range(250)]
    # The second of three transactions: "after" lets it reach storage, then cuts the answer.
    registry.upsert_mailboxes(parse_mailboxes(json.dumps(addresses[:100])))
    fault = faults.storage_reset(service="table", method="POST", path_prefix=f"/{ACCOUNT}/$batch",
                                 when=when, times=1)
    assert registry.upsert_mailboxes(parse_mailboxes(json.dumps(addresses[100:]))) == 150
    assert len(faults.events(fault_id=fault)) == 1
    assert [m.address for m in registry.list_mailboxes()] == addresses


def test_a_transaction_whose_connection_drops_twice_is_a_storage_error_naming_the_account(
        stack, faults):
    env = registry_env(stack) | {"MAIL_STORAGE": faults.storage_connection_string}
    registry = Components(Settings.from_mapping(env)).mailbox_registry
    faults.storage_reset(service="table", method="POST", path_prefix=f"/{ACCOUNT}/$batch", times=2)
    with pytest.raises(StorageError) as raised:
        registry.upsert_mailboxes(parse_mailboxes(json.dumps(["twice@contoso.com"])))
    assert "storage dropped the connection before it answered" in str(raised.value)
    assert f"storage account 127.0.0.1:{faults.ports.table}" in str(raised.value)
