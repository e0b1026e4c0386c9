"""NOTIFY_QUEUE and SUMMARY_BLOBS: off by default, each mistake named with what is expected."""

from __future__ import annotations

import pytest

from shared.errors import ConfigurationError
from shared.settings import Settings
from tests.test_settings import GOOD

IDENTITY = {k: v for k, v in GOOD.items() if k != "MAIL_STORAGE"} | {
    "MAIL_STORAGE__blobServiceUri": "https://a.blob.core.windows.net",
    "MAIL_STORAGE__tableServiceUri": "https://a.table.core.windows.net"}


def problems(env: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_mapping(env)
    return " ".join(refused.value.problems)


def test_notices_and_summary_blobs_are_off_unless_asked_for():
    settings = Settings.from_mapping(GOOD)
    assert (settings.notify_queue, settings.summary_blobs) == ("", False)
    asked = Settings.from_mapping(GOOD | {"NOTIFY_QUEUE": "mailferry-messages", "SUMMARY_BLOBS": "true"})
    assert (asked.notify_queue, asked.summary_blobs) == ("mailferry-messages", True)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"NOTIFY_QUEUE": "Mail_Notices"}, "NOTIFY_QUEUE is 'Mail_Notices', expected 3 to 63 lowercase"),
    ({"NOTIFY_QUEUE": "a--b"}, "NOTIFY_QUEUE is 'a--b'"),
    ({"SUMMARY_BLOBS": "maybe"}, "SUMMARY_BLOBS is 'maybe', expected true or false"),
])
def test_each_mistake_is_named(changes, expected):
    assert expected in problems(GOOD | changes)


def test_notices_need_the_queue_endpoint_with_identity_based_storage():
    assert Settings.from_mapping(IDENTITY).notify_queue == ""  # no queue needed without notices
    assert "NOTIFY_QUEUE is set but MAIL_STORAGE__queueServiceUri is not" in problems(
        IDENTITY | {"NOTIFY_QUEUE": "mailferry-messages"})
    with_queue = IDENTITY | {"NOTIFY_QUEUE": "mailferry-messages",
                             "MAIL_STORAGE__queueServiceUri": "https://a.queue.core.windows.net"}
    assert Settings.from_mapping(with_queue).notify_queue == "mailferry-messages"


def test_notices_need_a_connection_string_that_reaches_the_queue_service():
    sas = "sv=2022-11-02&ss=bt&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=c2lnbmF0dXJl"
    blob_and_table_only = ("BlobEndpoint=https://acct.blob.core.windows.net;TableEndpoint="
                           f"https://acct.table.core.windows.net;SharedAccessSignature={sas}")
    assert Settings.from_mapping(GOOD | {"MAIL_STORAGE": blob_and_table_only})
    assert "so the queue service cannot be reached" in problems(
        GOOD | {"MAIL_STORAGE": blob_and_table_only, "NOTIFY_QUEUE": "mailferry-messages"})
