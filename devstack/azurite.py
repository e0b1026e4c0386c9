"""Azurite (blob, queue, table) on free loopback ports, in memory."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack._proc import LOOPBACK, Proc, ServiceError, can_connect, free_port, spawn, wait_until

DEVSTACK_DIR = Path(__file__).resolve().parent
AZURITE_BIN = DEVSTACK_DIR / "node_modules" / ".bin" / "azurite"
ACCOUNT = "devstoreaccount1"
# The well-known Azurite development key (public, documented by Microsoft).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass
class AzuritePorts:
    blob: int
    queue: int
    table: int

    def as_dict(self) -> dict[str, int]:
        return {"blob": self.blob, "queue": self.queue, "table": self.table}

    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://{LOOPBACK}:{self.blob}/{ACCOUNT};"
            f"QueueEndpoint=http://{LOOPBACK}:{self.queue}/{ACCOUNT};"
            f"TableEndpoint=http://{LOOPBACK}:{self.table}/{ACCOUNT};"
        )


def _answers(port: int) -> bool:
    if not can_connect(port):
        return False
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/{ACCOUNT}?comp=list", timeout=2):
            return True
    except urllib.error.HTTPError as exc:  # any HTTP answer means it is serving
        exc.close()
        return True
    except OSError:
        return False


def start(work_dir: Path, timeout: float = 30.0,
          ports: AzuritePorts | None = None) -> tuple[Proc, AzuritePorts]:
    """Azurite on free ports, or on ``ports`` (a restart where clients already point)."""
    if not AZURITE_BIN.exists():
        raise ServiceError(f"{AZURITE_BIN} is missing: run devstack/install.sh")
    ports = ports or AzuritePorts(blob=free_port(), queue=free_port(), table=free_port())
    argv = [
        str(AZURITE_BIN),
        "--silent", "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck",
        "--blobHost", LOOPBACK, "--blobPort", str(ports.blob),
        "--queueHost", LOOPBACK, "--queuePort", str(ports.queue),
        "--tableHost", LOOPBACK, "--tablePort", str(ports.table),
    ]
    proc = spawn("azurite", argv, work_dir / "azurite.log", cwd=work_dir)
    wait_until(
        proc,
        lambda: _answers(ports.blob) and can_connect(ports.queue) and can_connect(ports.table),
        timeout,
        "blob/queue/table ports",
    )
    return proc, ports
