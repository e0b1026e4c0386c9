"""Shared fixtures: one real local stack (Dovecot, Azurite, identity emulator) per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from devstack.stack import Stack

if TYPE_CHECKING:
    from devstack.faults import FaultFront


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real local stack on free ports; every process stopped by PID at the end."""
    started = Stack.start(tmp_path_factory.mktemp("stack"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def new_mailbox(stack: Stack) -> Callable[..., str]:
    """Creates a mailbox with a unique address, so tests never see each other's mail."""

    def create(*, granted: bool = True, folders: tuple[str, ...] = ()) -> str:
        address = f"user-{uuid.uuid4().hex[:10]}@contoso.com"
        stack.add_mailbox(address, granted=granted)
        for folder in folders:
            stack.create_folder(address, folder)
        return address

    return create


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Removes any mailferry setting inherited from the shell running the tests."""
    from shared.settings import SETTING_NAMES

    for name in list(os.environ):
        if name in SETTING_NAMES or name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def fault_front(stack: Stack) -> Iterator[FaultFront]:
    """The Exchange behaviour layer (IMAP, POP3 and storage fronts) in front of the session's
    stack; stopped by PID at the end."""
    front = stack.start_faults()
    try:
        yield front
    finally:
        front.stop()


@pytest.fixture
def faults(fault_front: FaultFront) -> Iterator[FaultFront]:
    """The fronts with no fault armed and counters at zero; cleared again after the test."""
    fault_front.clear()
    yield fault_front
    fault_front.clear()
