"""One advice table: every failure kind has its row, advice follows the kind and never the
wording, and the hints in error messages come from the same rows."""

from __future__ import annotations

import re

import pytest

from shared.diagnoses import DIAGNOSES, Ids, diagnosis_for, hint, troubleshooting_markdown
from shared.errors import (
    AuthenticationError,
    CheckpointConflict,
    ConfigurationError,
    CredentialError,
    FailureKind,
    FolderUnavailable,
    MailboxAccessError,
    MailboxThrottled,
    MailferryError,
    MailServerError,
    StorageError,
)


def test_every_kind_has_exactly_one_row():
    assert set(DIAGNOSES) == set(FailureKind)


@pytest.mark.parametrize("kind", list(FailureKind))
def test_every_fix_fills_in_with_known_ids_only(kind: FailureKind):
    filled = Ids(client_id="app-1", tenant_id="tenant-1", service_principal_id="sp-1",
                 mailbox="ops@contoso.com", vault="https://kv.example/").fill(DIAGNOSES[kind])
    assert filled and all("{" not in fix and "}" not in fix for fix in filled)


@pytest.mark.parametrize("kind", list(FailureKind))
def test_hints_are_plain_text_from_the_row(kind: FailureKind):
    text = hint(kind, Ids(mailbox="ops@contoso.com"))
    assert "**" not in text and text.endswith(".")
    assert DIAGNOSES[kind].cause.replace("**", "") in text


DEFAULT_KINDS = [
    (MailferryError("x"), FailureKind.OTHER),
    (ConfigurationError(["IMAP_PORT expected a number"]), FailureKind.SETTING),
    (CredentialError("x"), FailureKind.VAULT_DENIED),
    (AuthenticationError("x"), FailureKind.TOKEN_REFUSED),
    (MailboxAccessError("x"), FailureKind.NOT_CONNECTED),
    (MailServerError("x"), FailureKind.SERVER_ERROR),
    (MailboxThrottled("x", retry_after_seconds=1.5), FailureKind.THROTTLED),
    (FolderUnavailable("x"), FailureKind.FOLDER_MISSING),
    (StorageError("x"), FailureKind.STORAGE_FAILED),
    (CheckpointConflict("x"), FailureKind.CHECKPOINT_CONFLICT),
]


@pytest.mark.parametrize(("error", "kind"), DEFAULT_KINDS)
def test_each_error_type_has_a_default_kind(error: MailferryError, kind: FailureKind):
    assert error.kind is kind
    assert diagnosis_for(error) is DIAGNOSES[kind]


def test_advice_follows_the_kind_not_the_wording():
    reworded = MailServerError("Could not connect: the folder does not exist, not trusted",
                               kind=FailureKind.THROTTLED)
    assert diagnosis_for(reworded) is DIAGNOSES[FailureKind.THROTTLED]
    assert diagnosis_for(AuthenticationError("does not offer XOAUTH2", kind=FailureKind.AUTH_REFUSED)) \
        is DIAGNOSES[FailureKind.AUTH_REFUSED]
    assert diagnosis_for(ValueError("AADSTS7000215")) is DIAGNOSES[FailureKind.OTHER]


def test_a_throttle_carries_its_wait_and_the_kind_serialises_as_a_name():
    error = MailboxThrottled("throttled", retry_after_seconds=299.961)
    assert error.retry_after_seconds == 299.961 and str(error) == "throttled"
    assert f"{FailureKind.CONNECTION_DROPPED}" == "connection_dropped"


def test_the_troubleshooting_table_has_one_row_per_kind_and_escapes_pipes():
    rows = troubleshooting_markdown().splitlines()[2:]
    assert len(rows) == len(FailureKind)
    for row, diagnosis in zip(rows, DIAGNOSES.values(), strict=True):
        assert row.startswith(f"| {diagnosis.symptom} |")
        assert len(re.findall(r"(?<!\\)\|", row)) == 4
