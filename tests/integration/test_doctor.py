"""`mailferry doctor` reproduces each failure on the real stack and names the fix."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from devstack.stack import Stack
from shared.diagnoses import DIAGNOSES, troubleshooting_markdown
from tests.integration.helpers import REPO, run_cli
from tests.integration.scripted_server import THROTTLED, Connection, ScriptedServer, imap_script


@pytest.fixture
def doctor(stack: Stack, tmp_path):
    """Runs `mailferry doctor --json` with these settings; returns (exit code, report)."""

    def run(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
        result = run_cli(env, "doctor", "--json", cwd=tmp_path)
        assert result.returncode in (0, 1, 2), result.stderr
        return result.returncode, json.loads(result.stdout)

    return run


def step(report: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [s for s in report["steps"] if s["name"] == name or s["name"].startswith(name)]
    assert matches, f"no step {name!r} in {[s['name'] for s in report['steps']]}"
    found: dict[str, Any] = matches[0]
    return found


def fixes(report: dict[str, Any]) -> str:
    return "\n".join(f for s in report["steps"] for f in s["fixes"])


def test_a_healthy_setup_passes_every_check(stack, new_mailbox, doctor):
    address = new_mailbox(folders=("Archive",))
    code, report = doctor(stack.settings_env(f"{address}:INBOX|Archive"))
    assert code == 0 and report["ok"], report
    assert report["claims"]["aud"] == "https://outlook.office365.com"
    assert "IMAP.AccessAsApp" in report["claims"]["roles"]
    assert {s["status"] for s in report["steps"]} == {"ok"}
    assert step(report, "folders")["detail"].startswith("INBOX, Archive present")


def test_the_token_itself_is_never_printed(stack, new_mailbox, tmp_path):
    address = new_mailbox()
    env = stack.settings_env(address)
    result = run_cli(env, "doctor", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓" in result.stdout and "eyJ" not in result.stdout and stack.client_secret not in result.stdout


def test_wrong_secret(stack, new_mailbox, doctor):
    stack.set_vault_secret("doctor-wrong-secret", "not-the-value")
    code, report = doctor(stack.settings_env(new_mailbox()) | {"CLIENT_SECRET_NAME": "doctor-wrong-secret"})
    assert code == 1
    token = step(report, "token acquired")
    assert token["status"] == "fail" and "AADSTS7000215" in token["detail"]
    assert "Value" in fixes(report)
    assert step(report, "AUTHENTICATE")["status"] == "skip"


def test_expired_secret_and_expiry_warnings(stack, new_mailbox, doctor):
    address = new_mailbox()
    soon = int(time.time()) + 10 * 86400
    stack.set_vault_secret("doctor-expiring", stack.client_secret, expires=soon)
    code, report = doctor(stack.settings_env(address) | {"CLIENT_SECRET_NAME": "doctor-expiring"})
    expiry = step(report, "credential expiry")
    assert code == 0 and expiry["status"] == "warn" and "expires on" in expiry["detail"]

    past = int(time.time()) - 86400
    stack.set_vault_secret("doctor-expired", stack.client_secret, expires=past)
    code, report = doctor(stack.settings_env(address) | {"CLIENT_SECRET_NAME": "doctor-expired"})
    assert code == 1 and step(report, "credential expiry")["status"] == "fail"


def test_secret_expired_at_entra(stack, new_mailbox, doctor):
    address = new_mailbox()
    stack.rotate_client_secret()  # a fresh secret, so expiring it does not touch the others
    stack.expire_client_secret()
    try:
        code, report = doctor(stack.settings_env(address))
        assert code == 1 and "AADSTS7000222" in step(report, "token acquired")["detail"]
        assert "az ad app credential reset" in fixes(report)
    finally:
        stack.rotate_client_secret()


def test_token_without_the_imap_role(stack, new_mailbox, doctor):
    address = new_mailbox()
    stack.set_app_roles(["POP.AccessAsApp"])
    try:
        code, report = doctor(stack.settings_env(address))
    finally:
        stack.set_app_roles(["IMAP.AccessAsApp", "POP.AccessAsApp"])
    assert code == 1
    assert step(report, "role IMAP.AccessAsApp")["status"] == "fail"
    assert "admin consent" in fixes(report)
    assert step(report, "AUTHENTICATE")["status"] == "fail"  # and Dovecot refuses it too


def test_wrong_audience(stack, new_mailbox, doctor):
    env = stack.settings_env(new_mailbox()) | {"TOKEN_SCOPE": "https://graph.microsoft.com/.default"}
    code, report = doctor(env)
    audience = step(report, "token audience")
    assert code == 1 and audience["status"] == "fail" and "Graph" in audience["detail"]
    assert "Set TOKEN_SCOPE to https://graph.microsoft.com/.default" not in fixes(report)


def test_unknown_mailbox_and_mailbox_without_access_name_the_exchange_commands(stack, new_mailbox, doctor):
    refused = new_mailbox(granted=False)
    code, report = doctor(stack.settings_env(f"{refused}, nobody-{int(time.time())}@contoso.com"))
    assert code == 1
    text = fixes(report)
    oid = report["claims"]["oid"]
    assert f"New-ServicePrincipal -AppId {stack.client_id} -ObjectId {oid}" in text
    assert f"Add-MailboxPermission -Identity {refused} -User {oid} -AccessRights FullAccess" in text
    logins = [s for s in report["steps"] if s["name"] == "AUTHENTICATE XOAUTH2"]
    assert [(s["status"], s["kind"]) for s in logins] == [("fail", "auth_refused")] * 2


def test_imap_unreachable(stack, new_mailbox, doctor):
    code, report = doctor(stack.settings_env(new_mailbox()) | {"IMAP_PORT": "1"})
    assert code == 1 and step(report, "TCP")["status"] == "fail"
    assert step(report, "TCP")["kind"] == "connect_failed"
    assert "IMAP_HOST/IMAP_PORT" in fixes(report)


def test_tls_failures(stack, new_mailbox, doctor):
    address = new_mailbox()
    code, report = doctor(stack.settings_env(address) | {"CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"})
    assert code == 1 and step(report, "TLS")["status"] == "fail" and "CA_BUNDLE" in fixes(report)
    assert step(report, "TLS")["kind"] == "tls_untrusted"
    code, report = doctor(stack.settings_env(address) | {"IMAP_PORT": str(stack.imap_port)})
    assert code == 1 and step(report, "TLS")["status"] == "fail" and "IMAP_SECURITY" in fixes(report)
    assert step(report, "TLS")["kind"] == "tls_protocol"


def bye_throttled(client: Connection, tag: bytes) -> None:
    client.send(b"* BYE " + THROTTLED + b"\r\n")


def close_at_once(client: Connection, tag: bytes) -> None:
    """The connection ends as soon as AUTHENTICATE arrives."""


@pytest.mark.parametrize(("script", "kind", "words", "fix"), [
    (bye_throttled, "throttled", THROTTLED.decode(), "poll less often (POLL_SCHEDULE)"),
    (close_at_once, "connection_dropped", "socket error: EOF", "goes on from the checkpoint"),
])
def test_a_throttle_or_a_drop_during_login_is_not_diagnosed_as_a_refusal(stack, new_mailbox, doctor,
                                                                           script, kind, words, fix):
    with ScriptedServer(stack.certs, imap_script(script)) as server:
        code, report = doctor(stack.settings_env(new_mailbox()) | {"IMAP_PORT": str(server.port)})
    login = step(report, "AUTHENTICATE")
    assert code == 1 and login["status"] == "fail" and login["kind"] == kind
    assert words in login["detail"] and fix in fixes(report)
    assert "New-ServicePrincipal" not in fixes(report) and "Add-MailboxPermission" not in fixes(report)
    assert {s["status"] for s in report["steps"] if s["name"] in ("TLS", "capabilities")} == {"ok"}


def test_key_vault_access_denied(stack, new_mailbox, doctor):
    stack.set_vault_reader(stack.managed_identity_object_id, granted=False)
    try:
        code, report = doctor(stack.settings_env(new_mailbox()))
    finally:
        stack.set_vault_reader(stack.managed_identity_object_id, granted=True)
    assert code == 1 and step(report, "credential readable")["status"] == "fail"
    assert "Key Vault Secrets User" in fixes(report)


def test_bad_settings_are_each_reported(doctor, stack):
    code, report = doctor(stack.settings_env("x@y.com") | {"IMAP_PORT": "imap", "M365_CLOUD": "mars"})
    assert code == 2
    assert {s["name"] for s in report["steps"]} == {"IMAP_PORT", "M365_CLOUD"}


def test_the_troubleshooting_page_matches_the_doctors_table():
    page = (REPO / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert troubleshooting_markdown() in page
    assert len(DIAGNOSES) > 20
