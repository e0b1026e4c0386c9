"""MAIL_STORAGE and MAIL_STORAGE__*: checked as the Azure Storage SDKs read them, no secret repeated."""

from __future__ import annotations

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from shared.errors import ConfigurationError
from shared.settings import Settings
from tests.test_settings import GOOD

KEY = "c2VjcmV0a2V5"  # base64 of "secretkey"
ACCOUNT = f"AccountName=acct;AccountKey={KEY}"
SAS = "sv=2022-11-02&ss=bqt&srt=sco&sp=rwdlacu&se=2030-01-01T00:00:00Z&spr=https&sig=c2lnbmF0dXJl"
IDENTITY = {k: v for k, v in GOOD.items() if k != "MAIL_STORAGE"} | {
    "MAIL_STORAGE__blobServiceUri": "https://acct.blob.core.windows.net",
    "MAIL_STORAGE__tableServiceUri": "https://acct.table.core.windows.net",
}


def storage_problem(env: dict[str, str], name: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping(env)
    [line] = caught.value.problems
    assert line.startswith(f"{name} "), line
    return line


@pytest.mark.parametrize("connection_string", [
    "UseDevelopmentStorage=true",
    "useDevelopmentStorage=true",
    f"DefaultEndpointsProtocol=https;{ACCOUNT};EndpointSuffix=core.windows.net",
    f"DefaultEndpointsProtocol=https;{ACCOUNT};EndpointSuffix=core.usgovcloudapi.net;",
    f"{ACCOUNT}",
    f"accountname=acct;accountkey={KEY}",
    f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;",
    "BlobEndpoint=https://acct.blob.core.windows.net/;QueueEndpoint=https://acct.queue.core.windows.net/;"
    "FileEndpoint=https://acct.file.core.windows.net/;TableEndpoint=https://acct.table.core.windows.net/;"
    f"SharedAccessSignature={SAS}",
    f"AccountName=acct;SharedAccessSignature={SAS}",
])
def test_connection_strings_that_pass_are_ones_every_storage_sdk_takes(connection_string):
    settings = Settings.from_mapping(GOOD | {"MAIL_STORAGE": connection_string, "POLL_MODE": "fanout"})
    assert settings.storage.connection_string is not None
    # The clients wiring builds from it: constructing them parses the string, without I/O.
    BlobServiceClient.from_connection_string(connection_string)
    TableClient.from_connection_string(connection_string, "checkpoints")
    QueueClient.from_connection_string(connection_string, "polls")


@pytest.mark.parametrize(("connection_string", "expected"), [
    ("hello world", "it is not Name=value parts separated by ';' (part 1 of 1 is not Name=value)"),
    (f"https://acct.blob.core.windows.net/?{SAS}", "it is a URL, not a connection string"),
    (f"https://acct.blob.core.windows.net/mail?{SAS}", "MAIL_STORAGE__blobServiceUri"),
    ("AccountName=acct", "it has no credential: add AccountName and AccountKey"),
    (f"AccountKey={KEY}", "it has AccountKey but no AccountName"),
    ("AccountName=acct;AccountKey=not base64!", "AccountKey that is not valid base64"),
    (f"DefaultEndpointsProtocol=ftp;{ACCOUNT}", "DefaultEndpointsProtocol other than https or http"),
    (f"{ACCOUNT};EndpointSuffix=https://core.windows.net", "EndpointSuffix that is not a DNS suffix"),
    (f"{ACCOUNT};AccountKey=b3RoZXI=", "it names AccountKey twice"),
    (f"AccountName=acct;AcountKey={KEY}", "'AcountKey', which is not a connection string name"),
    (f"AccountName = acct;AccountKey={KEY}", "without spaces around '='"),
    (f"AccountName=acct;;AccountKey={KEY}", "part 2 of 3 is not Name=value"),
    (f"={KEY}", "part 1 of 1 is not Name=value"),
    ("UseDevelopmentStorage=true;AccountName=acct", "must be the whole connection string"),
    ("UseDevelopmentStorage=True", "exactly 'UseDevelopmentStorage=true'"),
    (f"AccountName=Acct_1;AccountKey={KEY}", "AccountName that is not a storage account name"),
    (f"{ACCOUNT};BlobEndpoint=blob.example.com", "BlobEndpoint that is not an https://"),
    (f"{ACCOUNT};TableEndpoint=https://[::1", "TableEndpoint that is not a URL"),
    (f"{ACCOUNT};BlobEndpoint=https://acct.blob.core.windows.net?{SAS}", "carries a query string"),
    (f"{ACCOUNT};BlobSecondaryEndpoint=https://acct-secondary.blob.core.windows.net",
     "secondary blob endpoint but no BlobEndpoint"),
    ("SharedAccessSignature=sv=2022&sp=r;BlobEndpoint=https://acct.blob.core.windows.net",
     "SharedAccessSignature without a signature"),
    (f"SharedAccessSignature={SAS};BlobEndpoint=https://acct.blob.core.windows.net",
     "neither TableEndpoint nor AccountName"),
])
def test_a_malformed_connection_string_says_which_part_without_repeating_it(connection_string, expected):
    problem = storage_problem(GOOD | {"MAIL_STORAGE": connection_string}, "MAIL_STORAGE")
    assert expected in problem, problem
    for secret in (KEY, "c2lnbmF0dXJl", "hello", "base64!", "b3RoZXI", "acct"):
        assert secret not in problem.replace("acct-secondary", ""), problem


def test_fanout_needs_a_queue_endpoint_in_the_connection_string_too():
    connection_string = ("BlobEndpoint=https://acct.blob.core.windows.net;TableEndpoint="
                         f"https://acct.table.core.windows.net;SharedAccessSignature={SAS}")
    Settings.from_mapping(GOOD | {"MAIL_STORAGE": connection_string})
    problem = storage_problem(GOOD | {"MAIL_STORAGE": connection_string, "POLL_MODE": "fanout"},
                              "MAIL_STORAGE")
    assert "neither QueueEndpoint nor AccountName, so the queue service cannot be reached" in problem


@pytest.mark.parametrize(("value", "expected"), [
    ("acct.blob.core.windows.net", "is not an https:// (or, locally, http://) URL with a host name"),
    ("https://", "URL with a host name"),
    ("https://[::1", "is not a URL"),
    ("https://acct.blob.core.windows.net/?sv=1&sig=c2lnbmF0dXJl", "carries a query string"),
    ("https://user:c2lnbmF0dXJl@acct.blob.core.windows.net", "user name"),
    ("https://acct.blob.core.windows.net:99999", "is not a URL"),
    ("https://acct .blob.core.windows.net", "spaces or control characters"),
])
def test_identity_based_endpoints_must_be_urls_with_a_host(value, expected):
    name = "MAIL_STORAGE__blobServiceUri"
    problem = storage_problem(IDENTITY | {name: value}, name)
    assert expected in problem and "e.g. https://" in problem, problem
    assert "c2lnbmF0dXJl" not in problem


def test_identity_based_local_endpoints_may_be_plain_http():
    env = IDENTITY | {"MAIL_STORAGE__blobServiceUri": "http://127.0.0.1:10000/devstoreaccount1",
                      "MAIL_STORAGE__tableServiceUri": "http://127.0.0.1:10002/devstoreaccount1"}
    assert Settings.from_mapping(env).storage.table_service_uri == "http://127.0.0.1:10002/devstoreaccount1"
