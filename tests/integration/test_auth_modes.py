"""Every way the app can authenticate, against the real stack: a secret (and its rotation),
a certificate from Key Vault, and a federated managed identity with no secret at all."""

from __future__ import annotations

import uuid

import pytest

from devstack.stack import Stack
from shared.adapters.entra import MsalTokenSource
from tests.integration.helpers import new_poller, poll, stored_blobs

pytestmark = pytest.mark.usefixtures("identity_endpoint")


@pytest.fixture
def seeded(stack: Stack, new_mailbox) -> tuple[str, bytes]:
    address = new_mailbox()
    raw = f"Message-ID: <{uuid.uuid4().hex}@x>\r\nSubject: auth\r\n\r\nbody\r\n".encode()
    stack.append(address, "INBOX", raw)
    return address, raw


def certificate_env(stack: Stack, address: str, name: str) -> dict[str, str]:
    env = stack.settings_env(address) | {"AUTH_MODE": "certificate", "CLIENT_CERTIFICATE_NAME": name}
    del env["CLIENT_SECRET_NAME"]
    return env


@pytest.mark.parametrize(("pem", "send_chain"), [(False, False), (True, False), (False, True)])
def test_certificate_from_key_vault(stack, seeded, pem, send_chain):
    address, raw = seeded
    name = f"cert-{uuid.uuid4().hex[:8]}"
    stack.create_app_certificate(name=name, pem=pem)
    try:
        env = certificate_env(stack, address, name) | {
            "CLIENT_CERTIFICATE_SEND_CHAIN": "true" if send_chain else "false"}
        report = poll(env)
    finally:
        stack.unregister_app_certificates()
    assert report.failed == [], report.failed
    assert list(stored_blobs(env).values()) == [raw]


def test_a_certificate_not_registered_on_the_app_names_aadsts700027(stack, seeded):
    address, _ = seeded
    name = f"cert-{uuid.uuid4().hex[:8]}"
    stack.create_app_certificate(name=name, register=False)
    report = poll(certificate_env(stack, address, name))
    [result] = report.mailboxes
    assert result.error_type == "AuthenticationError" and "AADSTS700027" in (result.error or "")
    assert "Certificates & secrets" in (result.error or "")


def test_a_secret_in_the_certificate_setting_is_a_clear_error(stack, seeded):
    address, _ = seeded
    report = poll(certificate_env(stack, address, "mailferry-client-secret"))
    assert "is not a certificate with its private key" in (report.mailboxes[0].error or "")


def test_federated_managed_identity_needs_no_secret(stack, seeded):
    address, raw = seeded
    env = stack.settings_env(address) | {"AUTH_MODE": "federated"}
    for name in ("KEY_VAULT_URL", "CLIENT_SECRET_NAME"):
        del env[name]
    before = stack.stats().get("vault_requests", 0)
    report = poll(env)
    assert report.failed == [], report.failed
    assert list(stored_blobs(env).values()) == [raw]
    assert stack.stats().get("vault_requests", 0) == before  # Key Vault was never asked


@pytest.mark.parametrize("how", ["rotated", "expired"])
def test_a_rotated_or_expired_secret_is_reread_from_key_vault_without_a_restart(stack, seeded, how):
    address, raw = seeded
    env = stack.settings_env(address)
    poller, settings = new_poller(env)
    assert isinstance(poller.tokens, MsalTokenSource)
    poller.tokens.credential.get()  # the process has read the secret: it is cached
    if how == "expired":
        stack.expire_client_secret()  # AADSTS7000222 for the cached one
    stack.rotate_client_secret()  # a new secret, stored in the vault; the old one stops working
    requests_before = stack.token_request_count()
    report = poller.run(settings.mailboxes)
    assert report.failed == [], report.failed
    assert stack.token_request_count() - requests_before == 2  # refused once, then the new secret
    assert list(stored_blobs(env).values()) == [raw]


def test_the_token_is_served_from_msal_cache_on_the_next_poll(stack, seeded):
    address, _ = seeded
    poller, settings = new_poller(stack.settings_env(address))
    poller.run(settings.mailboxes)
    before = stack.token_request_count()
    report = poller.run(settings.mailboxes)
    assert report.failed == [] and stack.token_request_count() == before
