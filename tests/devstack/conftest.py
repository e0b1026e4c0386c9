"""Fixtures shared by the local stack's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from devstack.stack import Stack


@pytest.fixture
def http(stack: Stack) -> Iterator[requests.Session]:
    """An HTTP session trusting the stack's CA and ignoring the machine's CA variables."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(stack.ca_bundle)
    with session:
        yield session


@pytest.fixture
def managed_identity_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The managed-identity endpoint variables azure-identity reads."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", stack.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", stack.identity_header)
