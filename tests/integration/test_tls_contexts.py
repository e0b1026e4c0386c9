"""A CA bundle is read once per process for HTTPS and once for mail: not by each client (MSAL,
Key Vault, the identity, blob, table, queue, IMAP, POP3) and not for each connection."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.stack import Stack
from shared.adapters.tls import mail_tls_context, tls_context
from tests.devstack.raw_clients import message
from tests.integration.helpers import new_poller

pytestmark = pytest.mark.usefixtures("identity_endpoint")


@pytest.fixture
def bundle_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every CA file a TLS context loads from now on (the contexts built before are forgotten)."""
    tls_context.cache_clear()
    mail_tls_context.cache_clear()
    reads: list[str] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, cafile: Any = None, *args: Any, **kwargs: Any) -> None:
        reads.append(str(cafile))
        load(context, cafile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    yield reads
    tls_context.cache_clear()
    mail_tls_context.cache_clear()


def test_two_polls_through_every_client_read_the_ca_bundle_once(stack: Stack, new_mailbox,
                                                                bundle_reads: list[str]):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [message(n) for n in range(3)])
    env = stack.settings_env(address) | {"NOTIFY_QUEUE": "notices"}
    poller, settings = new_poller(env)
    assert poller.run(settings.mailboxes).delivered == 3
    stack.append_many(address, "INBOX", [message(n) for n in range(3, 5)])
    assert poller.run(settings.mailboxes).delivered == 2
    # A token from MSAL, the secret from Key Vault through the managed identity, blobs,
    # checkpoints and notices: one read of the bundle for all of them; IMAP has its own.
    assert bundle_reads.count(env["CA_BUNDLE"]) == 2, bundle_reads
