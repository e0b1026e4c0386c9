"""Helpers for tests that run mailferry against the real local stack."""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext
from azure.functions.decorators.function_app import Function
from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContainerClient

from shared.model import PollReport
from shared.naming import lease_blob_name, lease_container_name
from shared.poll import Poller
from shared.settings import SETTING_NAMES, Settings
from shared.wiring import Components

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def indexed_functions() -> dict[str, Function]:
    """function_app's functions by name, indexed once per process as the host does.

    Indexing twice reports a duplicate name, so every test module goes through here.
    """
    import function_app

    return {str(f.get_function_name()): f for f in function_app.app.get_functions()}


def container(env: dict[str, str]) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(env["MAIL_STORAGE"])
    return service.get_container_client(env["BLOB_CONTAINER"])


def stored_blobs(env: dict[str, str]) -> dict[str, bytes]:
    """Every blob in the mail container: name → bytes."""
    client = container(env)
    if not client.exists():
        return {}
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


def break_poll_lease(connection_string: str, blob_container: str, address: str) -> None:
    """What an operator does to rerun at once after killing a poll: break the lease the killed
    run still holds on the mailbox (it would expire within a minute)."""
    service = BlobServiceClient.from_connection_string(connection_string)
    blob = service.get_blob_client(lease_container_name(blob_container), lease_blob_name(address))
    BlobLeaseClient(blob).break_lease(lease_break_period=0)


def new_poller(env: dict[str, str]) -> tuple[Poller, Settings]:
    """A poller built the way the Function App builds it, but not shared with other tests."""
    settings = Settings.from_mapping(env)
    return Components(settings).poller, settings


def poll(env: dict[str, str]) -> PollReport:
    poller, settings = new_poller(env)
    return poller.run(settings.mailboxes)


def cli_environment(env: dict[str, str]) -> dict[str, str]:
    """The test process's environment without inherited settings, plus ``env``."""
    base = {k: v for k, v in os.environ.items()
            if k not in SETTING_NAMES and k not in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    return base | env | {"COLUMNS": "200", "PYTHONPATH": str(REPO)}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "shared.cli", *args]


def run_cli(env: dict[str, str], *args: str, cwd: Path,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the ``mailferry`` command line as an operator would, in ``cwd``."""
    return subprocess.run(cli_command(*args), env=cli_environment(env), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


class WorkerContext(func.Context):
    """The ``context`` the Functions Python worker passes: an invocation ID and the
    thread-local storage its log handler reads that ID from (one per worker process)."""

    storage = threading.local()

    def __init__(self) -> None:
        self._invocation_id = str(uuid.uuid4())

    def invoke(self, function: Callable[..., object], *args: object) -> None:
        """Call ``function`` as the worker does: the ID is set in the calling thread only."""
        self.storage.invocation_id = self._invocation_id
        try:
            function(*args, self)
        finally:
            self.storage.invocation_id = None

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        # azure-functions types it as the class; the worker passes an instance.
        return self.storage

    @property
    def function_name(self) -> str:
        return "test"

    @property
    def function_directory(self) -> str:
        return str(REPO)

    @property
    def trace_context(self) -> TraceContext:
        raise NotImplementedError

    @property
    def retry_context(self) -> RetryContext:
        raise NotImplementedError


class WorkerLogHandler(logging.Handler):
    """Keeps records as the worker forwards them to the host: only those whose thread
    carries an invocation ID; the host drops the rest."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.kept: list[tuple[str | None, logging.LogRecord]] = []
        self.dropped: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        invocation_id = getattr(WorkerContext.storage, "invocation_id", None)
        if invocation_id is None:
            self.dropped.append(record)
        else:
            self.kept.append((invocation_id, record))
