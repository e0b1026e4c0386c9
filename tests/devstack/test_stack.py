"""The local stack against the real clients: MSAL, azure-identity, Key Vault, imaplib,
poplib, azure-storage-blob."""

from __future__ import annotations

import base64
import email
import imaplib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient

from devstack._proc import proc_start_time
from devstack.identity.tokens import SigningKey
from devstack.seed import demo_messages, seed_demo
from devstack.stack import CLIENT_SECRET_NAME, REPO_ROOT, TOKEN_SCOPE, Stack

GRANTED = "granted@contoso.com"
UNGRANTED = "ungranted@contoso.com"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = Stack.start(tmp_path_factory.mktemp("devstack"))
    try:
        started.add_mailbox(GRANTED)
        started.add_mailbox(UNGRANTED, granted=False)
        yield started
    finally:
        started.stop()


@pytest.fixture(autouse=True)
def _clear_challenge_cache() -> None:
    from azure.keyvault.secrets._shared import HttpChallengeCache

    HttpChallengeCache.clear()


def _app(stack: Stack, http: requests.Session, secret: str | None = None,
         client_id: str | None = None) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id or stack.client_id,
        client_credential=secret if secret is not None else stack.client_secret,
        authority=stack.authority,
        instance_discovery=False,
        http_client=http,
    )


def _xoauth2_login(stack: Stack, address: str, token: str, port: int | None = None) -> bool:
    conn = imaplib.IMAP4_SSL("127.0.0.1", port or stack.imaps_port,
                             ssl_context=stack.ssl_context(), timeout=10)
    answers = iter([stack.xoauth2(address, token)])
    try:
        conn.authenticate("XOAUTH2", lambda _: next(answers, b""))
    except imaplib.IMAP4.error:
        conn.shutdown()
        return False
    conn.logout()
    return True


# -- Entra ID ------------------------------------------------------------------------------
def test_msal_gets_token_then_serves_it_from_cache(stack: Stack, http: requests.Session) -> None:
    app = _app(stack, http)
    before = stack.token_request_count()
    first = app.acquire_token_for_client([TOKEN_SCOPE])
    assert first["token_source"] == "identity_provider", first.get("error_description")
    second = app.acquire_token_for_client([TOKEN_SCOPE])
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert stack.token_request_count() == before + 1

    token = first["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "JWT" and header["alg"] == "RS256"
    keys = http.get(f"{stack.authority}/discovery/v2.0/keys").json()["keys"]
    assert [k["kid"] for k in keys] == [header["kid"]]
    claims = jwt.decode(token, stack.public_key_pem(), algorithms=["RS256"],
                        audience="https://outlook.office365.com")
    assert claims["iss"] == f"https://sts.windows.net/{stack.tenant_id}/"
    assert claims["tid"] == stack.tenant_id
    assert claims["appid"] == stack.client_id
    assert claims["roles"] == ["IMAP.AccessAsApp", "POP.AccessAsApp"]
    assert claims["exp"] - claims["iat"] == 3600 + 300  # iat and nbf dated back, as Entra does
    assert claims["nbf"] == claims["iat"] <= time.time() - 299


def test_wrong_secret_unknown_client_and_bad_scope_answer_like_entra(
    stack: Stack, http: requests.Session
) -> None:
    wrong = _app(stack, http, secret="not-the-secret").acquire_token_for_client([TOKEN_SCOPE])
    assert wrong["error"] == "invalid_client"
    assert wrong["error_description"].startswith("AADSTS7000215: Invalid client secret")
    assert wrong["error_codes"] == [7000215]
    assert {"timestamp", "trace_id", "correlation_id"} <= wrong.keys()

    unknown = _app(stack, http, client_id="6b1a4a4e-0000-4000-8000-000000000001")
    result = unknown.acquire_token_for_client([TOKEN_SCOPE])
    assert result["error"] == "unauthorized_client"
    assert result["error_description"].startswith("AADSTS700016")

    scope = _app(stack, http).acquire_token_for_client(["api://nothing/.default"])
    assert scope["error"] == "invalid_scope"
    assert scope["error_description"].startswith("AADSTS70011")


def test_rotated_and_expired_client_secret(stack: Stack, http: requests.Session) -> None:
    old = stack.client_secret
    new = stack.rotate_client_secret()
    try:
        stale = _app(stack, http, secret=old).acquire_token_for_client([TOKEN_SCOPE])
        assert "AADSTS7000215" in stale["error_description"]
        fresh = _app(stack, http, secret=new).acquire_token_for_client([TOKEN_SCOPE])
        assert "access_token" in fresh
        stack.expire_client_secret()
        expired = _app(stack, http, secret=new).acquire_token_for_client([TOKEN_SCOPE])
        assert expired["error_description"].startswith("AADSTS7000222")
    finally:
        stack.rotate_client_secret()


# -- Key Vault and managed identity --------------------------------------------------------
@pytest.mark.usefixtures("managed_identity_env")
def test_secret_client_reads_secret_through_managed_identity(stack: Stack) -> None:
    bundle = str(stack.ca_bundle)
    with (
        ManagedIdentityCredential(connection_verify=bundle) as credential,
        SecretClient(vault_url=stack.vault_url, credential=credential,
                     verify_challenge_resource=False, connection_verify=bundle) as client,
    ):
        secret = client.get_secret(CLIENT_SECRET_NAME)
        assert secret.value == stack.client_secret
        assert secret.id is not None
        assert secret.id.startswith(f"{stack.vault_url}secrets/{CLIENT_SECRET_NAME}/")
        assert secret.properties.enabled
        with pytest.raises(ResourceNotFoundError) as err:
            client.get_secret("no-such-secret")
        assert "SecretNotFound" in str(err.value)

        stack.set_vault_secret("rotating", "v1")
        stack.set_vault_secret("rotating", "v2")
        assert client.get_secret("rotating").value == "v2"


def test_vault_challenge_and_forbidden(stack: Stack, http: requests.Session) -> None:
    url = f"{stack.vault_url}secrets/{CLIENT_SECRET_NAME}?api-version=7.5"
    anonymous = http.get(url)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{stack.authority}", resource="https://vault.azure.net"'
    )
    # The app's own token is for a vault but its principal holds no role on it.
    app_token = stack.issue_token(aud="https://vault.azure.net", roles=None)
    forbidden = http.get(url, headers={"Authorization": f"Bearer {app_token}"})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "Forbidden"
    outlook_token = stack.issue_token()
    wrong_audience = http.get(url, headers={"Authorization": f"Bearer {outlook_token}"})
    assert wrong_audience.status_code == 401
    assert "AKV10022" in wrong_audience.json()["error"]["message"]


def test_managed_identity_endpoint_checks_header(stack: Stack, http: requests.Session) -> None:
    params = {"api-version": "2019-08-01", "resource": "https://vault.azure.net"}
    assert http.get(stack.identity_endpoint, params=params).status_code == 400
    wrong = http.get(stack.identity_endpoint, params=params,
                     headers={"X-IDENTITY-HEADER": "wrong"})
    assert wrong.status_code == 401
    ok = http.get(stack.identity_endpoint,
                  params={**params, "client_id": stack.managed_identity_client_id},
                  headers={"X-IDENTITY-HEADER": stack.identity_header})
    body = ok.json()
    assert ok.status_code == 200
    assert body["token_type"] == "Bearer" and body["resource"] == "https://vault.azure.net"
    assert int(body["expires_on"]) > time.time() + 3000
    assert body["client_id"] == stack.managed_identity_client_id


# -- IMAP / POP3 ----------------------------------------------------------------------------
def test_capabilities_look_like_exchange(stack: Stack) -> None:
    with imaplib.IMAP4_SSL("127.0.0.1", stack.imaps_port, ssl_context=stack.ssl_context()) as c:
        caps = set(c.capabilities)
    assert "AUTH=XOAUTH2" in caps
    assert not caps & {"CONDSTORE", "QRESYNC", "ESEARCH", "AUTH=PLAIN"}


def test_xoauth2_login_checks_grant_mailbox_signature_expiry_and_role(stack: Stack) -> None:
    token = _app_token(stack)
    assert _xoauth2_login(stack, GRANTED, token)
    assert not _xoauth2_login(stack, UNGRANTED, token)
    assert not _xoauth2_login(stack, "nobody@contoso.com", token)
    forged = stack.issue_token(key=SigningKey.generate())  # same kid, other key
    assert not _xoauth2_login(stack, GRANTED, forged)
    assert not _xoauth2_login(stack, GRANTED, stack.issue_token(exp=int(time.time()) - 5))
    assert not _xoauth2_login(stack, GRANTED, stack.issue_token(roles=["POP.AccessAsApp"]))
    assert not _xoauth2_login(stack, GRANTED,
                              stack.issue_token(aud="https://graph.microsoft.com"))
    assert not _xoauth2_login(stack, GRANTED, stack.issue_token(iss="https://sts.windows.net/x/"))


def test_grants_change_at_run_time(stack: Stack) -> None:
    address = "runtime@contoso.com"
    stack.add_mailbox(address, granted=False)
    token = stack.issue_token()
    assert not _xoauth2_login(stack, address, token)
    stack.grant(address)
    assert _xoauth2_login(stack, address, token)
    stack.revoke(address)
    assert not _xoauth2_login(stack, address, token)


def test_starttls_port_requires_tls_before_login(stack: Stack) -> None:
    with imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=10) as conn:
        assert "LOGINDISABLED" in conn.capabilities
        conn.starttls(ssl_context=stack.ssl_context())
        answers = iter([stack.xoauth2(GRANTED, stack.issue_token())])
        typ, _ = conn.authenticate("XOAUTH2", lambda _: next(answers, b""))
        assert typ == "OK"


def _pop3_login(stack: Stack, address: str, token: str) -> bool:
    """SASL XOAUTH2 over POP3 (no SASL-IR: AUTH, wait for '+', send the response)."""
    raw = socket.create_connection(("127.0.0.1", stack.pop3s_port), timeout=10)
    with stack.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        reader = sock.makefile("rb")
        try:
            assert reader.readline().startswith(b"+OK")
            sock.sendall(b"AUTH XOAUTH2\r\n")
            assert reader.readline().rstrip() == b"+"
            sock.sendall(base64.b64encode(stack.xoauth2(address, token)) + b"\r\n")
            line = reader.readline()
            if line.startswith(b"+ "):  # error challenge: answer with an empty line
                sock.sendall(b"\r\n")
                line = reader.readline()
            sock.sendall(b"QUIT\r\n")
            reader.readline()
            return line.startswith(b"+OK")
        finally:
            reader.close()


def test_pop3_xoauth2_needs_pop_role(stack: Stack) -> None:
    assert _pop3_login(stack, GRANTED, stack.issue_token())
    assert not _pop3_login(stack, GRANTED, stack.issue_token(roles=["IMAP.AccessAsApp"]))


def test_seeded_messages_come_back_byte_for_byte(stack: Stack) -> None:
    address = "bytes@contoso.com"
    stack.add_mailbox(address)
    stack.create_folder(address, "Archive")
    raws = [
        b"From: a@fabrikam.example\r\nTo: bytes@contoso.com\r\nSubject: one\r\n"
        b"Message-ID: <one@fabrikam.example>\r\n\r\nfirst body\r\n",
        b"From: b@fabrikam.example\r\nSubject: two\r\n\r\n" + b"x" * 70_000 + b"\r\n",
    ]
    for raw in raws:
        stack.append(address, "Archive", raw)
    assert stack.server_messages(address, "Archive") == {1: raws[0], 2: raws[1]}
    assert stack.server_messages(address, "INBOX") == {}
    assert stack.append_many(address, "INBOX", raws) == 2
    assert list(stack.server_messages(address, "INBOX").values()) == raws

    before = stack.mailbox_status(address, "Archive")
    stack.set_uidvalidity(address, "Archive", before["uidvalidity"] + 1)
    after = stack.mailbox_status(address, "Archive")
    assert after["uidvalidity"] == before["uidvalidity"] + 1
    assert after["messages"] == 2


def test_demo_seed(stack: Stack) -> None:
    messages = demo_messages()
    assert len(messages) >= 7
    assert any(len(m) > 5_000_000 for m in messages)
    assert any(b"=?utf-8?" in m for m in messages)
    assert any(email.message_from_bytes(m)["Message-ID"] is None for m in messages)
    counts = seed_demo(stack)
    assert counts["billing@contoso.com"] == {"INBOX": 2, "Invoices": 1}
    inbox = stack.server_messages("billing@contoso.com", "INBOX")
    assert max(len(m) for m in inbox.values()) > 5_000_000
    support = stack.server_messages("support@contoso.com", "INBOX")
    assert len(support) == 3


# -- Azurite and settings -------------------------------------------------------------------
def test_settings_env_and_azurite(stack: Stack) -> None:
    env = stack.settings_env("ops@contoso.com")
    assert env["KEY_VAULT_URL"] == stack.vault_url
    assert env["AUTHORITY_HOST"] + "/" + env["M365_TENANT_ID"] == stack.authority
    assert env["IMAP_PORT"] == str(stack.imaps_port)
    assert Path(env["CA_BUNDLE"]).read_bytes().endswith(stack.ca_pem.read_bytes())
    assert env["BLOB_CONTAINER"] != stack.settings_env("x@contoso.com")["BLOB_CONTAINER"]
    with BlobServiceClient.from_connection_string(env["MAIL_STORAGE"]) as service:
        container = service.create_container(env["BLOB_CONTAINER"])
        container.upload_blob("a.eml", b"hello")
        assert container.download_blob("a.eml").readall() == b"hello"


def _app_token(stack: Stack) -> str:
    return stack.issue_token()


# -- life cycle -----------------------------------------------------------------------------
def _gone(pid: int) -> bool:
    return proc_start_time(pid) is None


def test_cli_up_down_runs_beside_another_stack(stack: Stack, tmp_path: Path) -> None:
    state = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "devstack"]
    up = subprocess.run([*cmd, "up", "--state-dir", str(state)], env=env, cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120, check=False)
    assert up.returncode == 0, up.stderr
    other = Stack.load(state)
    try:
        assert all(other.alive().values())
        assert other.imaps_port != stack.imaps_port
        logs = "".join(path.read_text(errors="replace") for path in other.logs().values())
        assert other.client_secret not in logs and ".eyJ" not in logs
        printed = subprocess.run([*cmd, "env", "--state-dir", str(state)], env=env,
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        assert f"export IMAP_PORT={other.imaps_port}\n" in printed
        assert other.client_secret not in up.stdout + printed
    finally:
        down = subprocess.run([*cmd, "down", "--state-dir", str(state)], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    assert all(_gone(pid) for pid in other.pids().values())
    assert not other.dovecot.runtime_dir.exists()
    assert not state.exists()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    started = time.monotonic()
    own = Stack.start(tmp_path / "own")
    elapsed = time.monotonic() - started
    pids = own.pids()
    assert set(pids) == {"emulator", "dovecot", "azurite"}
    assert elapsed < 30
    own.stop()
    assert all(_gone(pid) for pid in pids.values())
    assert _pgrep(str(own.dovecot.runtime_dir)) == []
    assert _pgrep(str(tmp_path / "own")) == []


def test_storage_restarts_empty_on_the_same_ports(tmp_path: Path) -> None:
    own = Stack.start(tmp_path / "own")
    try:
        service = BlobServiceClient.from_connection_string(own.storage_connection_string)
        service.create_container("before")
        old_pid, ports = own.pids()["azurite"], own.azurite_ports.as_dict()
        own.restart_storage()
        assert _gone(old_pid) and own.pids()["azurite"] != old_pid
        assert own.azurite_ports.as_dict() == ports
        assert [c.name for c in service.list_containers()] == []  # same endpoint, empty
        service.create_container("after")
        assert Stack.load(tmp_path / "own").pids()["azurite"] == own.pids()["azurite"]
    finally:
        own.stop()
    assert _pgrep(str(tmp_path / "own")) == []


def _pgrep(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return out.stdout.split()


def test_start_failure_stops_what_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from devstack import azurite
    from devstack._proc import ServiceError
    from devstack.dovecot import Dovecot

    # Other stacks may start and stop meanwhile: follow only this attempt's Dovecot.
    prepared: list[Dovecot] = []
    prepare = Dovecot.prepare

    def recording_prepare(*args: Any, **kwargs: Any) -> Dovecot:
        dovecot = prepare(*args, **kwargs)
        prepared.append(dovecot)
        return dovecot

    monkeypatch.setattr(Dovecot, "prepare", recording_prepare)
    monkeypatch.setattr(azurite, "AZURITE_BIN", tmp_path / "missing-azurite")
    with pytest.raises(ServiceError, match="missing-azurite"):
        Stack.start(tmp_path / "broken")
    assert _pgrep(str(tmp_path / "broken")) == []
    assert len(prepared) == 1
    runtime_dir = prepared[0].runtime_dir
    assert _pgrep(str(runtime_dir)) == []
    assert not runtime_dir.exists()


def test_ssl_context_trusts_only_local_ca(stack: Stack) -> None:
    assert stack.ssl_context().verify_mode == ssl.CERT_REQUIRED
