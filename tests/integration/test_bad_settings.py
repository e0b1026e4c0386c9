"""Malformed settings stop the real command line with exit 2, the setting named, nothing created."""

from __future__ import annotations

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from devstack.stack import Stack
from tests.integration.helpers import run_cli

SAS = "sv=2022-11-02&ss=bqt&srt=sco&sp=rwdlacu&se=2030-01-01T00:00:00Z&spr=https&sig=c2lnbmF0dXJl"


def created_in_azurite(stack: Stack, env: dict[str, str]) -> list[str]:
    """The mail container and checkpoint table of ``env``, if either exists in the stack's Azurite."""
    blob = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    tables = TableServiceClient.from_connection_string(stack.storage_connection_string)
    found = [c.name for c in blob.list_containers(name_starts_with=env["BLOB_CONTAINER"])]
    found += [t.name for t in tables.query_tables(f"TableName eq '{env['CHECKPOINT_TABLE']}'")]
    return found


@pytest.mark.parametrize(("command", "name", "value", "expected", "never_shown"), [
    ("poll", "POLL_SCHEDULE", "99 99 99 99 99 99", "second field '99': 99 is out of range; expected 0-59",
     None),
    ("status", "POLL_SCHEDULE", "a b c d e f", "month field 'e'", None),
    ("poll", "MAILBOXES", '[{"address": "{address}", "folder": ["Archive"]}]', "unknown key 'folder'",
     None),
    ("poll", "MAILBOXES", "{address}:INBOX||Archive", "has an empty folder name", None),
    ("poll", "MAILBOXES", "[" * 50_000, "nested too deeply", None),
    ("poll", "MAIL_STORAGE", "hello world", "is not Name=value", "hello"),
    ("status", "MAIL_STORAGE", f"https://acct.blob.core.windows.net/?{SAS}", "is a URL", "c2lnbmF0dXJl"),
    ("poll", "MAIL_STORAGE", "AccountName=devstoreaccount1", "has no credential", None),
])
def test_a_bad_setting_exits_2_naming_it_and_creates_nothing(stack, new_mailbox, tmp_path, command, name,
                                                             value, expected, never_shown):
    address = new_mailbox()
    env = stack.settings_env(address) | {name: value.replace("{address}", address)}
    result = run_cli(env, command, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    assert "Configuration error" in stderr and name in stderr and expected in stderr, stderr
    assert "Traceback" not in result.stderr
    if never_shown:
        assert never_shown not in result.stdout + result.stderr
    assert created_in_azurite(stack, env) == []


def test_doctor_exits_2_and_names_each_bad_setting(stack, new_mailbox, tmp_path):
    env = stack.settings_env(new_mailbox()) | {"POLL_SCHEDULE": "0 0 22-2 * * *",
                                                "MAIL_STORAGE": "AccountName=devstoreaccount1;AccountKey=!!"}
    result = run_cli(env, "doctor", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    output = " ".join(result.stdout.split())
    assert "POLL_SCHEDULE" in output and "runs backwards" in output
    assert "MAIL_STORAGE" in output and "AccountKey that is not valid base64" in output
    assert "!!" not in output and "Traceback" not in result.stderr
    assert created_in_azurite(stack, env) == []
