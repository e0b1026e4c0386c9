"""A local certificate authority and the server certificate every local service presents."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme

SYSTEM_BUNDLES = (
    Path("/etc/ssl/certs/ca-certificates.crt"),
    Path("/etc/pki/tls/certs/ca-bundle.crt"),
    Path("/etc/ssl/cert.pem"),
)


@dataclass(frozen=True)
class CertFiles:
    """Paths of the PEM files written by :func:`create_ca`."""

    ca_pem: Path
    ca_bundle: Path
    server_cert: Path
    server_key: Path

    def as_dict(self) -> dict[str, str]:
        return {
            "ca_pem": str(self.ca_pem),
            "ca_bundle": str(self.ca_bundle),
            "server_cert": str(self.server_cert),
            "server_key": str(self.server_key),
        }

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> CertFiles:
        return cls(
            ca_pem=Path(data["ca_pem"]),
            ca_bundle=Path(data["ca_bundle"]),
            server_cert=Path(data["server_cert"]),
            server_key=Path(data["server_key"]),
        )


def system_bundle() -> bytes:
    """The platform's trusted roots (falls back to certifi when installed)."""
    for candidate in SYSTEM_BUNDLES:
        if candidate.is_file():
            return candidate.read_bytes()
    try:
        import certifi  # noqa: PLC0415
    except ImportError:
        return b""
    return Path(certifi.where()).read_bytes()


def create_ca(directory: Path) -> CertFiles:
    """Create a CA and a certificate for ``127.0.0.1``/``localhost`` under ``directory``.

    ``ca-bundle.pem`` holds the system roots followed by the local CA, so one file works
    for clients that talk both to the local stack and to the internet.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="mailferry devstack")
    server = ca.issue_cert("127.0.0.1", "localhost", "::1")
    files = CertFiles(
        ca_pem=directory / "ca.pem",
        ca_bundle=directory / "ca-bundle.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
    )
    ca_pem = ca.cert_pem.bytes()
    files.ca_pem.write_bytes(ca_pem)
    system = system_bundle()
    if system and not system.endswith(b"\n"):
        system += b"\n"
    files.ca_bundle.write_bytes(system + ca_pem)
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    files.server_cert.write_bytes(chain)
    fd = os.open(files.server_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(server.private_key_pem.bytes())
    return files
