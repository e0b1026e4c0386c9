"""Run the identity emulator: ``python -m devstack.emulator --state-dir DIR --port 0``.

Reads ``DIR/emulator.json`` (an :class:`~devstack.identity.state.EmulatorConfig`), serves
HTTPS on 127.0.0.1 and writes the bound port to ``DIR/emulator.port``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
import threading
from pathlib import Path
from types import FrameType

from devstack.identity.server import EmulatorServer
from devstack.identity.state import EmulatorConfig, EmulatorState
from devstack.identity.tokens import SigningKey

CONFIG_NAME = "emulator.json"
PORT_NAME = "emulator.port"


def build_server(state_dir: Path, port: int) -> EmulatorServer:
    config = EmulatorConfig.load(state_dir / CONFIG_NAME)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.server_cert, config.server_key)
    key = SigningKey.load(Path(config.signing_key))
    return EmulatorServer(("127.0.0.1", port), EmulatorState(config), key, context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.emulator")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    server = build_server(args.state_dir, args.port)
    port: int = server.server_address[1]
    tmp = args.state_dir / (PORT_NAME + ".tmp")
    tmp.write_text(str(port))
    tmp.replace(args.state_dir / PORT_NAME)
    logging.info("identity emulator listening on %s", server.base_url)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    logging.info("identity emulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
