"""Helpers for tests that run mailferry against the real local stack."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

from azure.functions.decorators.function_app import Function
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.model import PollReport
from shared.poll import Poller
from shared.settings import SETTING_NAMES, Settings
from shared.wiring import build_poller

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


def new_poller(env: dict[str, str]) -> tuple[Poller, Settings]:
    """A poller built the way the Function App builds it, but not shared with other tests."""
    settings = Settings.from_mapping(env)
    return build_poller(settings), settings


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
