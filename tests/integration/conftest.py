"""Fixtures of the tests that run mailferry in this process against the real stack."""

from __future__ import annotations

import pytest

from devstack.stack import Stack


@pytest.fixture
def identity_endpoint(stack: Stack, monkeypatch: pytest.MonkeyPatch, clean_environ: None) -> None:
    """What the Functions platform sets for a managed identity; azure-identity reads it."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", stack.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", stack.identity_header)
