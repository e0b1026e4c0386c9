"""The Functions entry points through the v2 programming model's own objects, and the CLI."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from azure.functions.decorators.function_app import Function
from azure.functions.timer import TimerRequest

from devstack.stack import Stack
from shared.entry import EveryMailboxFailed
from tests.integration.helpers import (
    WorkerContext,
    WorkerLogHandler,
    indexed_functions,
    run_cli,
    stored_blobs,
)


@pytest.fixture
def settings_in_environment(stack: Stack, monkeypatch: pytest.MonkeyPatch, clean_environ: None):
    """Sets app settings the way the Functions host does: as environment variables."""

    def apply(env: dict[str, str]) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return apply


def timer_function() -> Function:
    """The timer function, from the one indexing of function_app this process does."""
    return indexed_functions()["poll_mailboxes"]


def test_the_timer_is_indexed_with_the_schedule_setting_and_not_on_startup():
    function = timer_function()
    binding = json.loads(function.get_function_json())["bindings"][0]
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%POLL_SCHEDULE%"
    assert binding["runOnStartup"] is False and binding["useMonitor"] is True
    assert function.get_function_name() == "poll_mailboxes"


def test_calling_the_timer_function_runs_a_real_poll(stack, new_mailbox, settings_in_environment):
    address = new_mailbox()
    stack.append(address, "INBOX", b"From: a@b.c\r\nSubject: timer\r\n\r\nbody\r\n")
    env = stack.settings_env(address)
    settings_in_environment(env)
    handler = timer_function().get_user_function()
    handler(TimerRequest(past_due=True), WorkerContext())
    assert list(stored_blobs(env).values()) == list(stack.server_messages(address, "INBOX").values())


def test_the_timer_run_fails_when_every_mailbox_fails(stack, new_mailbox, settings_in_environment):
    env = stack.settings_env(new_mailbox(granted=False))
    settings_in_environment(env)
    with pytest.raises(EveryMailboxFailed, match="Add-MailboxPermission"):
        timer_function().get_user_function()(TimerRequest(past_due=False), WorkerContext())


def test_cli_poll_prints_a_summary_and_status_shows_checkpoints_and_health(stack, new_mailbox, tmp_path):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [b"Subject: 1\r\n\r\na\r\n", b"Subject: 2\r\n\r\nb\r\n"])
    env = stack.settings_env(address)
    polled = run_cli(env, "poll", cwd=tmp_path)
    assert polled.returncode == 0, polled.stderr
    row = next(line for line in polled.stdout.splitlines() if address in line)
    assert " 2 " in row and "ok" in row
    status = run_cli(env, "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert address in status.stdout and "INBOX" in status.stdout and "never" not in status.stdout


def test_cli_reads_local_settings_json(stack, new_mailbox, tmp_path):
    address = new_mailbox()
    stack.append(address, "INBOX", b"Subject: from file\r\n\r\nx\r\n")
    env = stack.settings_env(address)
    (tmp_path / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": env}))
    only_identity = {"IDENTITY_ENDPOINT": stack.identity_endpoint,
                     "IDENTITY_HEADER": stack.identity_header}
    result = run_cli(only_identity, "poll", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(stored_blobs(env)) == 1


def test_every_log_record_of_an_invocation_carries_it_on_any_thread(stack, new_mailbox,
                                                                     settings_in_environment):
    """The alert queries 'mailbox poll failed', logged from a mailbox thread: on Azure the
    host keeps only records the worker can attribute to the invocation."""
    good, refused = new_mailbox(), new_mailbox(granted=False)
    stack.append_many(good, "INBOX", [f"Subject: {n}\r\n\r\nx\r\n".encode() for n in range(5)])
    settings_in_environment(stack.settings_env(f"{good}, {refused}") | {"UPLOAD_CONCURRENCY": "3"})
    handler = WorkerLogHandler()
    mailferry_logger = logging.getLogger("mailferry")
    mailferry_logger.addHandler(handler)
    previous_level = mailferry_logger.level
    mailferry_logger.setLevel(logging.DEBUG)
    try:
        context = WorkerContext()
        # Called from a thread the test starts, like the worker's own invocation thread.
        caller = threading.Thread(target=context.invoke,
                                  args=(timer_function().get_user_function(), TimerRequest(past_due=False)))
        caller.start()
        caller.join(120)
    finally:
        mailferry_logger.removeHandler(handler)
        mailferry_logger.setLevel(previous_level)
    assert handler.dropped == []
    failures = [r for i, r in handler.kept if "mailbox poll failed" in r.getMessage()]
    assert len(failures) == 1 and refused in failures[0].getMessage()
    assert (failures[0].threadName or "").startswith("mailbox")  # logged from a worker thread
    assert {i for i, _ in handler.kept} == {context.invocation_id}
