"""Settings: every problem reported at once, each naming its setting."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from shared.model import PollOptions
from shared.setting_reader import SettingReader
from shared.setting_specs import SETTING_FIELD, SPECS, SettingSpec, from_setting
from shared.settings import SETTING_NAMES, SETTINGS, MailboxConfig, Settings, parse_mailboxes

GOOD = {
    "M365_TENANT_ID": "00000000-0000-0000-0000-000000000001",
    "M365_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
    "KEY_VAULT_URL": "https://kv.vault.azure.net/",
    "CLIENT_SECRET_NAME": "mailferry-secret",
    "MAILBOXES": "ops@contoso.com, billing@contoso.com:INBOX|Invoices/2024",
    "POLL_SCHEDULE": "0 */5 * * * *",
    "MAIL_STORAGE": "UseDevelopmentStorage=true",
}


def test_good_settings_parse_with_defaults():
    s = Settings.from_mapping(GOOD)
    assert (s.imap.host, s.imap.port, s.pop3.port) == ("outlook.office365.com", 993, 995)
    assert s.credentials.mode == "secret" and s.credentials.secret_name == "mailferry-secret"
    assert s.mailboxes == (MailboxConfig("ops@contoso.com"),
                           MailboxConfig("billing@contoso.com", ("INBOX", "Invoices/2024")))
    assert "UseDevelopment" not in repr(s)  # the connection string prints as <SECRET>


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("M365_TENANT_ID", "contoso", "expected a GUID"),
    ("M365_CLIENT_ID", "", "M365_CLIENT_ID is not set"),
    ("KEY_VAULT_URL", "http://kv.vault.azure.net", "expected an https:// URL"),
    ("CLIENT_SECRET_NAME", "bad name!", "Key Vault secret name"),
    ("MAILBOXES", "not-an-address", "is not an email address"),
    ("MAILBOXES", "a@b.com, A@b.com", "listed twice"),
    ("MAILBOXES", "[{\"address\": 3}]", "each JSON entry"),
    ("POLL_SCHEDULE", "*/5 * * * *", "six fields"),
    ("BLOB_CONTAINER", "Mail_Box", "lowercase"),
    ("CHECKPOINT_TABLE", "1table", "starting with a letter"),
    ("MAIL_STORAGE", "", "MAIL_STORAGE is not set"),
    ("IMAP_PORT", "99999", "from 1 to 65535"),
    ("IMAP_PORT", "imap", "whole number"),
    ("IMAP_HOST", "outlook.office365.com:993", "host name alone"),
    ("IMAP_SECURITY", "ssl", "expected one of: tls, starttls"),
    ("TOKEN_SCOPE", "https://outlook.office365.com/IMAP.AccessAsApp", "/.default"),
    ("CA_BUNDLE", "/nonexistent/ca.pem", "no such file"),
    ("FETCH_BATCH_SIZE", "0", "from 1 to 1000"),
    ("KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", "maybe", "true or false"),
])
def test_each_malformed_setting_is_named_with_what_is_expected(name, value, expected):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping(GOOD | {name: value})
    assert len(caught.value.problems) == 1
    assert name in caught.value.problems[0] and expected in caught.value.problems[0]


@pytest.mark.parametrize(("cloud", "authority", "scope", "host"), [
    ("global", "https://login.microsoftonline.com", "https://outlook.office365.com/.default",
     "outlook.office365.com"),
    ("usgov", "https://login.microsoftonline.us", "https://outlook.office365.us/.default",
     "outlook.office365.us"),
    ("usgovdod", "https://login.microsoftonline.us", "https://outlook-dod.office365.us/.default",
     "outlook-dod.office365.us"),
    ("china", "https://login.partner.microsoftonline.cn", "https://partner.outlook.cn/.default",
     "partner.outlook.cn"),
])
def test_the_cloud_picks_sign_in_host_scope_and_mail_hosts_together(cloud, authority, scope, host):
    s = Settings.from_mapping(GOOD | {"M365_CLOUD": cloud})
    assert (s.authority_host, s.token_scope, s.imap.host, s.pop3.host) == (authority, scope, host, host)


def test_cloud_endpoints_can_each_be_overridden():
    s = Settings.from_mapping(GOOD | {"M365_CLOUD": "usgov", "IMAP_HOST": "imap.example.net",
                                      "AUTHORITY_HOST": "https://login.example.net/"})
    assert s.imap.host == "imap.example.net" and s.authority_host == "https://login.example.net"
    assert s.token_scope == "https://outlook.office365.us/.default"


@pytest.mark.parametrize(("changes", "expected"), [
    ({"M365_CLOUD": "germany"}, "M365_CLOUD is 'germany', expected one of: global, usgov"),
    ({"AUTH_MODE": "password"}, "AUTH_MODE is 'password', expected one of: secret, certificate, federated"),
    ({"AUTH_MODE": "certificate"}, "CLIENT_CERTIFICATE_NAME is not set but AUTH_MODE is certificate"),
    ({"AUTH_MODE": "federated"}, "MANAGED_IDENTITY_CLIENT_ID is not set but AUTH_MODE is federated"),
    ({"CLIENT_SECRET_NAME": ""}, "CLIENT_SECRET_NAME is not set but AUTH_MODE is secret"),
    ({"KEY_VAULT_URL": ""}, "KEY_VAULT_URL is not set but AUTH_MODE is secret"),
    ({"MAIL_PROTOCOL": "pop3", "MAILBOXES": "a@b.com:Archive"}, "POP3, which sees the Inbox only"),
    ({"MAILBOXES": '[{"address": "a@b.com", "protocol": "smtp"}]'}, "expected imap or pop3"),
    ({"POLL_MODE": "parallel"}, "POLL_MODE is 'parallel'"),
    ({"POLL_QUEUE": "Polls"}, "POLL_QUEUE is 'Polls'"),
])
def test_mode_dependent_settings_are_named(changes, expected):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping(GOOD | changes)
    assert any(expected in p for p in caught.value.problems), caught.value.problems


def test_federated_mode_needs_no_key_vault():
    env = {k: v for k, v in GOOD.items() if k not in ("KEY_VAULT_URL", "CLIENT_SECRET_NAME")}
    s = Settings.from_mapping(env | {"AUTH_MODE": "federated", "M365_CLOUD": "china",
                                     "MANAGED_IDENTITY_CLIENT_ID": "00000000-0000-0000-0000-000000000003"})
    assert s.credentials.key_vault_url is None
    assert s.credentials.federated_audience == "api://AzureADTokenExchangeChina"


def test_fanout_needs_a_queue_endpoint_with_identity_based_storage():
    env = {k: v for k, v in GOOD.items() if k != "MAIL_STORAGE"} | {
        "MAIL_STORAGE__blobServiceUri": "https://a.blob.core.windows.net",
        "MAIL_STORAGE__tableServiceUri": "https://a.table.core.windows.net",
        "POLL_MODE": "fanout",
    }
    with pytest.raises(ConfigurationError, match="MAIL_STORAGE__queueServiceUri"):
        Settings.from_mapping(env)


def test_mailbox_protocols():
    s = Settings.from_mapping(GOOD | {"MAIL_PROTOCOL": "pop3", "MAILBOXES":
                                      '["a@b.com", {"address": "c@d.com", "protocol": "imap", "folders": ["X"]}]'})
    assert [(m.address, m.protocol, m.folders) for m in s.mailboxes] == [
        ("a@b.com", "pop3", ("INBOX",)), ("c@d.com", "imap", ("X",))]


def test_every_problem_is_reported_together():
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping({"IMAP_PORT": "x"})
    text = str(caught.value)
    for name in ("M365_TENANT_ID", "M365_CLIENT_ID", "KEY_VAULT_URL", "CLIENT_SECRET_NAME",
                 "MAILBOXES", "POLL_SCHEDULE", "MAIL_STORAGE", "IMAP_PORT"):
        assert name in text


def test_a_connection_string_never_appears_in_the_error():
    secret = "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=c2VjcmV0a2V5"
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping(GOOD | {"MAIL_STORAGE": secret, "IMAP_PORT": "0"})
    assert "c2VjcmV0a2V5" not in str(caught.value)


def test_identity_based_storage():
    env = {k: v for k, v in GOOD.items() if k != "MAIL_STORAGE"} | {
        "MAIL_STORAGE__blobServiceUri": "https://a.blob.core.windows.net",
        "MAIL_STORAGE__tableServiceUri": "https://a.table.core.windows.net",
        "MAIL_STORAGE__credential": "managedidentity",
    }
    storage = Settings.from_mapping(env).storage
    assert storage.connection_string is None
    assert storage.blob_service_uri == "https://a.blob.core.windows.net"


def test_mailboxes_json_form():
    assert parse_mailboxes('[{"address": "a@b.com", "folders": ["Sent Items"]}, "c@d.com"]') == (
        MailboxConfig("a@b.com", ("Sent Items",)), MailboxConfig("c@d.com"))


def mailboxes_problem(value: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping(GOOD | {"MAILBOXES": value})
    [line] = caught.value.problems
    assert line.startswith("MAILBOXES is not valid: "), line
    return line


@pytest.mark.parametrize(("value", "expected"), [
    ('[{"address": "a@b.com", "folder": ["Archive"]}]',
     "JSON entry 1 has an unknown key 'folder'; the keys are address, folders, protocol, first_run, after_delivery."),
    ('[{"address": "a@b.com", "Protocol": "imap"}]', "unknown key 'Protocol'"),
    ('[{"address": "a@b.com", "address": "c@d.com"}]', "has the key 'address' twice"),
    ('[{"address": "a@b.com", "folders": []}]', "is an empty list: leave 'folders' out to read INBOX"),
    ('[{"address": "a@b.com", "folders": [""]}]', "a@b.com has an empty folder name"),
    ('[{"address": "a@b.com", "folders": ["INBOX", "  "]}]', "a@b.com has an empty folder name"),
    ("a@b.com:INBOX||Archive", "a@b.com has an empty folder name"),
    ("a@b.com:INBOX|", "a@b.com has an empty folder name"),
    ("a@b.com:", "'a@b.com' has ':' but no folder after it"),
    ("a@b.com: | ", "a@b.com has an empty folder name"),
    ("a@b.com:Archive|Archive", "folder 'Archive' of a@b.com is listed twice."),
    ("a@b.com:INBOX|Inbox", "folder 'Inbox' of a@b.com is listed twice (INBOX is case-insensitive)."),
    ('[{"address": "a@b.com", "folders": ["inbox", "INBOX"]}]', "INBOX is case-insensitive"),
    ("[" * 100_000, "its JSON is nested too deeply"),
    ('{"address": "a@b.com"}', "its JSON is an object; it must be a list"),
    ('[{"address": "a@b.com", "protocol": null}]', "protocol of JSON entry 1 ('a@b.com') is null"),
    ('[{"address": "a@b.com", "protocol": ["imap"]}]', "is a list, expected imap or pop3"),
    ('[{"address": "a@b.com", "folders": "INBOX"}]', "folders of JSON entry 1 ('a@b.com') must be a list"),
    ('[{"address": "a@b.com", "folders": [1, null]}]', "must be a list of folder names"),
    ('[{"folders": ["INBOX"]}]', "JSON entry 1 has no address"),
    ("[true, 3, null, [\"a@b.com\"]]", "JSON entry 4 is a list"),
    ('[{"address": "a@b.com", "folders": ["\\ud800"]}]', "is not valid Unicode (a lone surrogate)"),
    ('[{"address": "a@b.com", "folders": ["a\\u007fb"]}]', "has a control character"),
    ("[" + "9" * 5000 + "]", "its JSON cannot be read"),
    ("a@b.com:Archive, a@b.com", "a@b.com is listed twice"),
    ("x" * 5000, "is not an email address"),
])
def test_each_mailboxes_mistake_is_named(value, expected):
    problem = mailboxes_problem(value)
    assert expected in problem, problem
    assert len(problem) < 600 and problem.isprintable()


def test_every_mailboxes_problem_is_reported_at_once():
    problem = mailboxes_problem('[{"address": "a@b.com", "folder": ["X"]}, {"address": "c@d.com", '
                                '"folders": ["X", "X"]}, "bad"]')
    assert "unknown key 'folder'" in problem and "'X' of c@d.com is listed twice" in problem
    assert "'bad' is not an email address" in problem


def test_folder_names_are_exact_in_json_and_only_inbox_ignores_case():
    twins = ["INBOX", "\u0131nbox", "Archive", "archive", "Caf\u00e9", "Cafe\u0301", " Leading", "Trailing ",
             "a/b", "&%\"'"]
    [mailbox] = parse_mailboxes(json.dumps([{"address": "a@b.com", "folders": twins}]))
    assert mailbox.folders == tuple(twins)
    [mailbox] = parse_mailboxes("a@b.com: INBOX | Sent Items ")
    assert mailbox.folders == ("INBOX", "Sent Items")


ODD_VALUES = ["", " ", "\x00", "\t", "\n", "a" * 5000, "9" * 5000, "-1", "0", "1e999", "\ud800", "é",
              "\u202e", "[", "{", "[]", "{}", "[" * 5000, "https://[", "http://", "https://h:99999", "*", "?",
              ";", "=", "a=b", "null", "true", "hello world", "UseDevelopmentStorage=true;",
              "https://acct.blob.core.windows.net/?sv=1&sig=c2lnbmF0dXJl", "\\\\server\\share",
              '[{"address": "a@b.com", "folders": [null]}]', '["a@b.com", ["x"]]', '[1e999]',
              "0 0 0 0 0 0", "* * * * * *", "a@b.com:\x00", "00000000-0000-0000-0000-00000000000g"]


def test_no_value_of_any_setting_raises_anything_but_a_configuration_error():
    """Settings.from_mapping raises ConfigurationError or nothing, whatever a setting holds."""
    identity = {k: v for k, v in GOOD.items() if k != "MAIL_STORAGE"} | {
        "MAIL_STORAGE__blobServiceUri": "https://a.blob.core.windows.net",
        "MAIL_STORAGE__tableServiceUri": "https://a.table.core.windows.net"}
    bases = [GOOD, GOOD | {"POLL_MODE": "fanout"}, GOOD | {"AUTH_MODE": "certificate"}, identity,
             identity | {"AUTH_MODE": "federated"}]
    for base in bases:
        for spec in SETTINGS:
            for value in ODD_VALUES:
                try:
                    Settings.from_mapping(base | {spec.name: value})
                except ConfigurationError as e:
                    for problem in e.problems:
                        assert problem.isprintable() and len(problem) < 1200, (spec.name, value, problem)
                        if spec.name == "MAIL_STORAGE" and len(value.strip()) > 4:
                            assert value.strip() not in problem, problem


def test_every_setting_in_the_list_is_read():
    """A setting in SETTINGS that the reader never looks at would be a lie in the docs."""
    seen: list[str] = []

    class Recording(dict[str, str]):
        def get(self, key, default=None):
            seen.append(key)
            return super().get(key, default)

    Settings.from_mapping(Recording(GOOD))
    Settings.from_mapping(Recording(GOOD | {"AUTH_MODE": "certificate", "CLIENT_CERTIFICATE_NAME": "c"}))
    assert {s.name for s in SETTINGS} - set(seen) == set()


def test_settings_list_has_unique_names_and_descriptions():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    assert all(s.description and s.example for s in SETTINGS)


def docs_settings_rows() -> dict[str, list[str]]:
    """The settings table of docs/settings.md: setting name to its cells after the name."""
    page = (Path(__file__).parents[1] / "docs" / "settings.md").read_text(encoding="utf-8")
    section = page[:page.index("\n## ")] if "\n## " in page else page
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            # A '|' inside a cell is written '\|', as Markdown tables need.
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def documented_description(spec: SettingSpec) -> str:
    """What the table's last column says of a setting: its description, then its range."""
    text = spec.description.replace("|", "\\|")
    return text + (f" From {spec.low} to {spec.high}." if spec.kind == "integer" else "")


def test_the_docs_settings_table_is_the_spec():
    rows = docs_settings_rows()
    assert set(rows) == SETTING_NAMES, "docs/settings.md lists other settings than the spec"
    for spec in SETTINGS:
        required, default, description = rows[spec.name]
        assert default == (f"`{spec.default}`" if spec.default else ""), (spec.name, default)
        assert (required == "yes") == spec.required, (spec.name, required)
        assert description == documented_description(spec), (
            f"the docs/settings.md row of {spec.name} should read: "
            f"| `{spec.name}` | {required} | {default} | {documented_description(spec)} |")


def test_each_default_is_a_value_of_its_own_type():
    for spec in SETTINGS:
        if spec.kind == "integer":
            assert spec.low is not None and spec.high is not None and spec.default is not None
            assert spec.low <= int(spec.default) <= spec.high, spec.name
            assert spec.example == spec.default, spec.name
        elif spec.kind == "choice":
            assert spec.default in spec.choices and len(set(spec.choices)) == len(spec.choices), spec.name
        elif spec.kind == "boolean":
            assert spec.default in ("true", "false"), spec.name
        else:
            assert spec.low is None and spec.high is None and not spec.choices, spec.name


@pytest.mark.parametrize("spec", [s for s in SETTINGS if s.kind == "integer"], ids=lambda s: s.name)
def test_each_integer_setting_takes_its_whole_range_and_nothing_past_it(spec):
    assert spec.low is not None and spec.high is not None
    for value in (spec.low, spec.high):
        Settings.from_mapping(GOOD | {spec.name: str(value)})
    for value in (spec.low - 1, spec.high + 1):
        with pytest.raises(ConfigurationError) as caught:
            Settings.from_mapping(GOOD | {spec.name: str(value)})
        assert caught.value.problems == [
            f"{spec.name} is {value}, expected a whole number from {spec.low} to {spec.high}."]


@pytest.mark.parametrize("spec", [s for s in SETTINGS if s.kind == "choice"], ids=lambda s: s.name)
def test_each_choice_setting_takes_its_choices_in_any_case_and_nothing_else(spec):
    for choice in spec.choices:
        try:
            Settings.from_mapping(GOOD | {spec.name: choice.upper()})
        except ConfigurationError as e:  # a choice may need other settings; never refused itself
            assert not any(p.startswith(f"{spec.name} is ") for p in e.problems), e.problems
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_mapping(GOOD | {spec.name: "nonesuch"})
    assert f"{spec.name} is 'nonesuch', expected one of: {', '.join(spec.choices)}." in caught.value.problems


def test_poll_options_take_their_defaults_and_values_from_the_spec():
    for option in fields(PollOptions):
        if SETTING_FIELD not in option.metadata:
            continue  # first_run: read by its own rule (a scope, not a number)
        spec = SPECS[option.metadata[SETTING_FIELD]]
        assert spec.kind == "integer" and option.default == int(spec.default or ""), option.name
    assert Settings.from_mapping(GOOD).poll == PollOptions()
    changed = Settings.from_mapping(GOOD | {"UPLOAD_CONCURRENCY": "3", "POLL_DEADLINE_SECONDS": "60"})
    assert changed.poll == PollOptions(upload_concurrency=3, deadline_seconds=60)


def test_a_field_declared_from_a_setting_is_read_with_that_settings_range():
    """A new integer knob is a spec line and a field declared with ``from_setting``."""

    @dataclass(frozen=True)
    class ServerOptions:
        port: int = from_setting("IMAP_PORT")
        label: str = "not a setting"

    assert ServerOptions().port == 993
    reader = SettingReader({"IMAP_PORT": " 1143 "})
    assert reader.options(ServerOptions) == ServerOptions(port=1143)
    assert reader.problems == []
    refused = SettingReader({"IMAP_PORT": "0"})
    refused.options(ServerOptions)
    assert refused.problems == ["IMAP_PORT is 0, expected a whole number from 1 to 65535."]
