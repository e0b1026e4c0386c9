"""Run the fronts: ``python -m devstack.faults --state-dir DIR``.

Reads ``DIR/faults.json`` (a :class:`FrontConfig`), listens on free 127.0.0.1 ports (IMAP and
POP3 with TLS, blob, queue and table, the control API) and writes them to
``DIR/faults.ports`` (a :class:`FrontPorts`) once every listener is up. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from devstack.faults.book import FaultBook
from devstack.faults.control import build_app
from devstack.faults.imap_front import ImapSession
from devstack.faults.pop3_front import Pop3Session
from devstack.faults.rules import SERVICES
from devstack.faults.session import LOOPBACK, MailFront
from devstack.faults.storage_front import StorageFront

CONFIG_NAME = "faults.json"
PORTS_NAME = "faults.ports"
log = logging.getLogger("devstack.faults")


@dataclass(frozen=True)
class FrontConfig:
    """What the fronts relay to, the certificate they present and the control API's key."""

    imap_upstream: int
    pop3_upstream: int
    blob_upstream: int
    queue_upstream: int
    table_upstream: int
    server_cert: str
    server_key: str
    ca_pem: str
    key: str

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        path.chmod(0o600)

    @classmethod
    def load(cls, path: Path) -> FrontConfig:
        return cls(**json.loads(path.read_text()))


@dataclass(frozen=True)
class FrontPorts:
    """Where each front listens."""

    imap: int
    pop3: int
    blob: int
    queue: int
    table: int
    control: int

    @classmethod
    def load(cls, path: Path) -> FrontPorts:
        return cls(**json.loads(path.read_text()))


def _contexts(config: FrontConfig) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.load_cert_chain(config.server_cert, config.server_key)
    upstream = ssl.create_default_context(cafile=config.ca_pem)
    return server, upstream


async def serve(state_dir: Path, stop: asyncio.Event) -> None:
    config = FrontConfig.load(state_dir / CONFIG_NAME)
    server_tls, upstream_tls = _contexts(config)
    book = FaultBook()
    imap = MailFront(book, ImapSession, config.imap_upstream, server_tls, upstream_tls)
    pop3 = MailFront(book, Pop3Session, config.pop3_upstream, server_tls, upstream_tls)
    upstreams = {"blob": config.blob_upstream, "queue": config.queue_upstream, "table": config.table_upstream}
    storage = {name: StorageFront(book, name, upstreams[name]) for name in SERVICES}
    runner = web.AppRunner(build_app(book, config.key), access_log=None)
    await runner.setup()
    control = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    control.bind((LOOPBACK, 0))
    await web.SockSite(runner, control).start()
    ports = {"imap": await imap.start(), "pop3": await pop3.start(),
             **{name: await front.start() for name, front in storage.items()},
             "control": control.getsockname()[1]}
    watchers = [asyncio.create_task(front.watch_outages()) for front in storage.values()]
    tmp = state_dir / (PORTS_NAME + ".tmp")
    tmp.write_text(json.dumps(ports))
    tmp.replace(state_dir / PORTS_NAME)
    log.info("fronts listening: %s", ports)
    try:
        await stop.wait()
    finally:
        for task in watchers:
            task.cancel()
        for mail in (imap, pop3):
            await mail.close()
        for relay in storage.values():
            await relay.close()
        await runner.cleanup()
    log.info("fronts stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.faults")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.state_dir, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
