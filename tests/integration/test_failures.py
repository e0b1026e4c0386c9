"""What operators see when something is wrong: clear errors, other mailboxes unaffected,
nothing written on bad settings, no secret or token in any log line."""

from __future__ import annotations

import base64
import logging

import pytest

from devstack.stack import Stack
from shared.adapters.imap import ImapServer
from shared.errors import AuthenticationError, FailureKind, MailServerError
from shared.model import Secret
from tests.integration.helpers import container, new_poller, poll, run_cli, stored_blobs

pytestmark = pytest.mark.usefixtures("identity_endpoint")


def one_message(subject: str = "hello") -> bytes:
    return f"From: a@fabrikam.com\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\nbody\r\n".encode()


def imap_server(stack: Stack) -> ImapServer:
    return ImapServer("127.0.0.1", stack.imaps_port, ca_bundle=stack.ca_bundle)


def log_in(server: ImapServer, address: str, token: str) -> None:
    with server.open(address, Secret(token)):
        pass


def test_mailbox_without_access_fails_alone_with_a_clear_error(stack, new_mailbox):
    good, refused = new_mailbox(), new_mailbox(granted=False)
    stack.append(good, "INBOX", one_message())
    stack.append(refused, "INBOX", one_message())
    report = poll(stack.settings_env(f"{refused}; {good}"))
    by_address = {m.address: m for m in report.mailboxes}
    assert by_address[good].ok and by_address[good].delivered == 1
    failure = by_address[refused]
    assert failure.error_type == "AuthenticationError"
    assert "Add-MailboxPermission" in (failure.error or "")
    assert "New-ServicePrincipal" in (failure.error or "")


@pytest.mark.parametrize("bad_token", ["other key", "expired", "graph audience", "no role"])
def test_an_invalid_token_is_refused_with_a_clear_error(stack, new_mailbox, bad_token):
    from devstack.identity.tokens import SigningKey

    address = new_mailbox()
    token = {
        "other key": lambda: stack.issue_token(key=SigningKey.generate()),
        "expired": lambda: stack.issue_token(exp=1_600_000_000, iat=1_599_990_000, nbf=1_599_990_000),
        "graph audience": lambda: stack.issue_token(aud="https://graph.microsoft.com"),
        "no role": lambda: stack.issue_token(roles=[]),
    }[bad_token]()
    with pytest.raises(AuthenticationError, match="refused the app's token") as refused:
        log_in(imap_server(stack), address, token)
    assert refused.value.kind is FailureKind.AUTH_REFUSED
    # The same mailbox opens with a good token: the failure was the token's.
    with imap_server(stack).open(address, Secret(stack.issue_token())) as session:
        assert session.select_folder("INBOX").uidvalidity > 0


def test_unknown_mailbox_is_refused(stack):
    with pytest.raises(AuthenticationError) as refused:
        log_in(imap_server(stack), "nobody@contoso.com", stack.issue_token())
    assert refused.value.kind is FailureKind.AUTH_REFUSED


def test_missing_folder_names_the_setting(stack, new_mailbox):
    address = new_mailbox()
    report = poll(stack.settings_env(f"{address}:INBOX|Does Not Exist"))
    [missing] = report.mailboxes[0].folder_errors
    assert "Check the folder names in MAILBOXES" in (missing.error or "")


def test_unreachable_and_untrusted_imap_servers(stack, new_mailbox):
    address = new_mailbox()
    with pytest.raises(MailServerError, match="Could not connect") as unreachable:
        log_in(ImapServer("127.0.0.1", 1, ca_bundle=stack.ca_bundle), address, "x")
    assert unreachable.value.kind is FailureKind.CONNECT_FAILED
    with pytest.raises(MailServerError, match="not trusted") as untrusted:
        log_in(ImapServer("127.0.0.1", stack.imaps_port), address, "x")
    assert untrusted.value.kind is FailureKind.TLS_UNTRUSTED
    with pytest.raises(MailServerError, match="TLS to") as plain:
        log_in(ImapServer("127.0.0.1", stack.imap_port, ca_bundle=stack.ca_bundle), address, "x")
    assert plain.value.kind is FailureKind.TLS_PROTOCOL


def test_wrong_client_secret_names_aadsts7000215_and_the_fix(stack, new_mailbox, tmp_path):
    address = new_mailbox()
    name = "wrong-secret-test"
    stack.set_vault_secret(name, "00000000-aaaa-bbbb-cccc-000000000000")  # a secret *ID*
    env = stack.settings_env(address) | {"CLIENT_SECRET_NAME": name}
    result = run_cli(env, "poll", cwd=tmp_path)
    assert result.returncode == 1
    output = " ".join((result.stdout + result.stderr).split())
    assert "AADSTS7000215" in output
    assert "Value, not its Secret ID" in output
    report = poll(env)
    assert {m.error_type for m in report.mailboxes} == {"AuthenticationError"}


def test_key_vault_secret_missing_names_the_setting(stack, new_mailbox):
    address = new_mailbox()
    env = stack.settings_env(address) | {"CLIENT_SECRET_NAME": "no-such-secret"}
    report = poll(env)
    assert "fix CLIENT_SECRET_NAME" in (report.mailboxes[0].error or "")


@pytest.mark.parametrize(("name", "value"), [
    ("M365_TENANT_ID", "contoso.onmicrosoft.com"),
    ("MAILBOXES", "ops-at-contoso"),
    ("POLL_SCHEDULE", "every 5 minutes"),
    ("IMAP_PORT", "imaps"),
    ("BLOB_CONTAINER", "Mail"),
])
def test_malformed_setting_is_named_and_nothing_is_written(stack, new_mailbox, tmp_path, name, value):
    address = new_mailbox()
    stack.append(address, "INBOX", one_message())
    env = stack.settings_env(address) | {name: value}
    result = run_cli(env, "poll", cwd=tmp_path)
    assert result.returncode == 2
    assert name in result.stderr and "Configuration error" in result.stderr
    if name != "BLOB_CONTAINER":
        assert not container(env).exists()


def test_no_secret_or_token_in_any_log_line_at_debug(stack, new_mailbox, caplog):
    address, refused = new_mailbox(), new_mailbox(granted=False)
    stack.append(address, "INBOX", one_message())
    env = stack.settings_env(f"{address}, {refused}")
    caplog.set_level(logging.DEBUG)
    poller, settings = new_poller(env)
    report = poller.run(settings.mailboxes)
    assert report.delivered == 1
    token = poller.tokens.get_token().reveal()  # served from MSAL's cache: the one used
    secret = stack.client_secret
    forbidden = {
        "client secret": secret,
        "access token": token,
        "token signature": token.rsplit(".", 1)[-1],
        "XOAUTH2 string": base64.b64encode(stack.xoauth2(address, token)).decode()[:40],
        "storage account key": env["MAIL_STORAGE"].split("AccountKey=")[1].split(";")[0],
    }
    text = "\n".join(r.getMessage() + " " + str(r.args) for r in caplog.records)
    assert len(caplog.records) > 20  # DEBUG logging really was on
    for what, value in forbidden.items():
        assert value not in text, f"{what} leaked into the logs"
    for name, raw in stored_blobs(env).items():
        for what, value in forbidden.items():
            assert value.encode() not in raw, f"{what} leaked into blob {name}"


def test_unreachable_storage_fails_fast_and_clearly(stack, new_mailbox):
    """An outage must end a run inside its time box, not after minutes of silent retries."""
    import socket
    import time

    from shared.errors import StorageError
    from tests.integration.helpers import new_poller

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = stack.settings_env(new_mailbox())
    env["MAIL_STORAGE"] = (env["MAIL_STORAGE"]
                           .replace(f":{stack.azurite_ports.blob}/", f":{port}/")
                           .replace(f":{stack.azurite_ports.table}/", f":{port}/"))
    started = time.monotonic()
    with pytest.raises(StorageError, match="unreachable") as raised:
        new_poller(env)
    elapsed = time.monotonic() - started
    print(f"unreachable storage reported after {elapsed:.1f} s")
    assert elapsed < 20  # three retries about 2 s apart, not minutes
    assert stack.storage_connection_string.split("AccountKey=")[1].split(";")[0] not in str(raised.value)
