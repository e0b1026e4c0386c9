"""``mailferry poll --json`` and ``status --json`` for scripts, and exit codes that tell a
failed mailbox (1), bad settings (2) and a wrong command line (64) apart."""

from __future__ import annotations

import json

import pytest

from tests.integration.helpers import run_cli


def test_poll_json_reports_each_mailbox_and_fails_with_1_when_one_failed(stack, new_mailbox, tmp_path):
    good, refused = new_mailbox(), new_mailbox(granted=False)
    stack.append_many(good, "INBOX", [b"Subject: 1\r\n\r\na\r\n", b"Subject: 2\r\n\r\nbb\r\n"])
    env = stack.settings_env(f"{good}, {refused}")
    result = run_cli(env, "poll", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["schema"] == "mailferry.poll.v1" and report["ok"] is False
    assert report["delivered"] == 2 and report["failed"] == [refused]
    mailboxes = {m["address"]: m for m in report["mailboxes"]}
    assert mailboxes[good]["ok"] is True and mailboxes[good]["delivered"] == 2
    [inbox] = mailboxes[good]["folders"]
    assert inbox["folder"] == "INBOX" and inbox["delivered"] == 2 and inbox["bytes_delivered"] > 0
    assert mailboxes[refused]["error_type"] == "AuthenticationError" and "Add-MailboxPermission" in mailboxes[refused]["error"]

    again = run_cli(stack.settings_env(good) | {k: env[k] for k in ("BLOB_CONTAINER", "CHECKPOINT_TABLE")},
                    "poll", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["ok"] is True and json.loads(again.stdout)["delivered"] == 0

    status = run_cli(env, "status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["schema"] == "mailferry.status.v1"
    assert [(c["mailbox"], c["folder"], c["last_uid"]) for c in document["checkpoints"]] == [(good, "INBOX", 2)]
    health = {h["mailbox"]: h for h in document["health"]}
    assert health[good]["delivered_total"] == 2 and health[good]["last_success_at"].endswith("+00:00")
    assert health[refused]["consecutive_failures"] == 1 and health[refused]["last_success_at"] is None


def test_bad_settings_exit_with_2_and_print_no_json(stack, tmp_path):
    env = stack.settings_env("ops@contoso.com") | {"POLL_SCHEDULE": "every minute"}
    for command in ("poll", "status"):
        result = run_cli(env, command, "--json", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stdout == "" and "POLL_SCHEDULE" in result.stderr


@pytest.mark.parametrize("args", [(), ("bogus",), ("poll", "--jsn"), ("status", "extra"), ("mailboxes", "add")])
def test_a_wrong_command_line_exits_with_64(tmp_path, args):
    result = run_cli({}, *args, cwd=tmp_path)
    assert result.returncode == 64, result.stderr
    assert "usage: mailferry" in result.stderr


def test_help_is_not_an_error(tmp_path):
    result = run_cli({}, "poll", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--json" in result.stdout
