"""The fronts as a process of the stack: started, found again and stopped by PID."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from devstack._proc import LOOPBACK, Proc, can_connect, spawn, wait_until
from devstack.azurite import ACCOUNT, ACCOUNT_KEY
from devstack.faults.client import FaultClient
from devstack.faults.server import CONFIG_NAME, PORTS_NAME, FrontConfig, FrontPorts

if TYPE_CHECKING:
    from devstack.stack import Stack

REPO_ROOT = Path(__file__).resolve().parents[2]


class FaultFront(FaultClient):
    """Running fronts (IMAP, POP3, blob, queue, table) and the client of their control API."""

    def __init__(self, stack: Stack, directory: Path, ports: FrontPorts, key: str, proc: Proc) -> None:
        super().__init__(f"http://{LOOPBACK}:{ports.control}", key)
        self.stack = stack
        self.directory = directory
        self.ports = ports
        self.proc = proc

    @classmethod
    def start(cls, stack: Stack, directory: Path | None = None, *, timeout: float = 30.0) -> FaultFront:
        """Start the fronts in front of ``stack``'s Dovecot and Azurite; wait until they listen."""
        directory = (directory or stack.state_dir / "faults").resolve()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / PORTS_NAME).unlink(missing_ok=True)
        az = stack.azurite_ports
        config = FrontConfig(
            imap_upstream=stack.imaps_port, pop3_upstream=stack.pop3s_port, blob_upstream=az.blob,
            queue_upstream=az.queue, table_upstream=az.table, server_cert=str(stack.certs.server_cert),
            server_key=str(stack.certs.server_key), ca_pem=str(stack.ca_pem),
            key=secrets.token_urlsafe(24))
        config.save(directory / CONFIG_NAME)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        proc = spawn("faults", [sys.executable, "-m", "devstack.faults", "--state-dir",
                                str(directory)], directory / "faults.log", env=env, cwd=REPO_ROOT)
        port_file = directory / PORTS_NAME
        try:
            wait_until(proc, lambda: port_file.exists() and can_connect(FrontPorts.load(port_file).control),
                       timeout, "the fronts' ports")
        except BaseException:
            proc.stop()
            raise
        return cls(stack, directory, FrontPorts.load(port_file), config.key, proc)

    @classmethod
    def load(cls, stack: Stack, directory: Path, proc: Proc) -> FaultFront:
        """Fronts started by another process, from the files in ``directory``."""
        config = FrontConfig.load(directory / CONFIG_NAME)
        return cls(stack, directory, FrontPorts.load(directory / PORTS_NAME), config.key, proc)

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL by PID."""
        self.proc.stop()

    def alive(self) -> bool:
        return self.proc.alive()

    @property
    def imap_port(self) -> int:
        return self.ports.imap

    @property
    def pop3_port(self) -> int:
        return self.ports.pop3

    @property
    def storage_connection_string(self) -> str:
        """Azurite's connection string with every endpoint through the storage fronts."""
        p = self.ports
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint=http://{LOOPBACK}:{p.blob}/{ACCOUNT};"
                f"QueueEndpoint=http://{LOOPBACK}:{p.queue}/{ACCOUNT};"
                f"TableEndpoint=http://{LOOPBACK}:{p.table}/{ACCOUNT};")

    def settings_env(self, mailboxes: str, *, mail: bool = True, storage: bool = True) -> dict[str, str]:
        """``stack.settings_env(mailboxes)`` with IMAP, POP3 (``mail``) and the storage account
        (``storage``) reached through the fronts; everything else unchanged."""
        env = self.stack.settings_env(mailboxes)
        if mail:
            env |= {"IMAP_HOST": LOOPBACK, "IMAP_PORT": str(self.ports.imap), "IMAP_SECURITY": "tls",
                    "POP3_HOST": LOOPBACK, "POP3_PORT": str(self.ports.pop3), "POP3_SECURITY": "tls"}
        if storage:
            env["MAIL_STORAGE"] = self.storage_connection_string
        return env
