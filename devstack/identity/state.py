"""The emulator's configuration (written by the stack) and its mutable run-time state."""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization

from devstack.identity.certs import load_certificate, thumbprint
from devstack.identity.tokens import APP_ROLES


def new_guid() -> str:
    return str(uuid.uuid4())


@dataclass
class EmulatorConfig:
    """Everything the emulator process needs; the stack writes it as JSON (mode 0600)."""

    tenant_id: str = field(default_factory=new_guid)
    client_id: str = field(default_factory=new_guid)
    client_object_id: str = field(default_factory=new_guid)  # the service principal
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    managed_identity_client_id: str = field(default_factory=new_guid)
    managed_identity_object_id: str = field(default_factory=new_guid)
    identity_header: str = field(default_factory=lambda: secrets.token_hex(16))
    admin_key: str = field(default_factory=lambda: secrets.token_hex(16))
    app_roles: list[str] = field(default_factory=lambda: list(APP_ROLES))
    vault_secrets: dict[str, str] = field(default_factory=dict)
    # Principals (object IDs) holding "Key Vault Secrets User" on the vault.
    vault_readers: list[str] = field(default_factory=list)
    signing_key: str = ""
    server_cert: str = ""
    server_key: str = ""

    def save(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(self), fh, indent=2)

    @classmethod
    def load(cls, path: Path) -> EmulatorConfig:
        data: dict[str, Any] = json.loads(path.read_text())
        return cls(**data)


@dataclass
class SecretVersion:
    version: str
    value: str
    created: int
    updated: int
    enabled: bool = True
    expires: int | None = None
    content_type: str | None = None
    not_before: int | None = None
    managed: bool = False  # the secret behind a Key Vault certificate


@dataclass
class VaultCertificate:
    """One version of a Key Vault certificate (its secret shares the version id)."""

    version: str
    cer: bytes  # DER
    x5t: bytes  # SHA-1 thumbprint
    subject: str
    not_before: int
    expires: int
    created: int
    content_type: str


@dataclass
class KeyCredential:
    """A certificate registered on the app (the public part only), as ``keyCredentials``."""

    certificate_pem: str
    sha1: bytes
    sha256: bytes
    start: int
    end: int

    @classmethod
    def from_pem(cls, pem: str) -> KeyCredential:
        cert = load_certificate(pem)
        return cls(
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            sha1=thumbprint(cert, "sha1"),
            sha256=thumbprint(cert, "sha256"),
            start=int(cert.not_valid_before_utc.timestamp()),
            end=int(cert.not_valid_after_utc.timestamp()),
        )


@dataclass
class ClientSecret:
    value: str
    expires: int | None = None


Versioned = TypeVar("Versioned", SecretVersion, VaultCertificate)


def _pick_version(versions: list[Versioned], version: str | None) -> Versioned | None:
    """The version named (any case), or without a name the latest."""
    if not version:
        return versions[-1] if versions else None
    return next((v for v in versions if v.version == version.lower()), None)


class EmulatorState:
    """Mutable state shared by the request threads (guarded by one lock)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.client_secrets: list[ClientSecret] = [ClientSecret(config.client_secret)]
        self.app_roles = list(config.app_roles)
        self.vault: dict[str, list[SecretVersion]] = {}
        self.certificates: dict[str, list[VaultCertificate]] = {}
        self.key_credentials: list[KeyCredential] = []
        self.vault_readers = set(config.vault_readers)
        self.counters: dict[str, int] = {
            "token_requests": 0,
            "token_issued": 0,
            "msi_requests": 0,
            "vault_requests": 0,
        }
        for name, value in config.vault_secrets.items():
            self.set_secret(name, value)

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    def counters_snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counters)

    def reset_counters(self) -> None:
        with self.lock:
            self.counters = dict.fromkeys(self.counters, 0)

    def set_app_roles(self, roles: list[str]) -> list[str]:
        with self.lock:
            self.app_roles = list(roles)
            return list(self.app_roles)

    def set_vault_reader(self, object_id: str, *, granted: bool) -> None:
        with self.lock:
            if granted:
                self.vault_readers.add(object_id)
            else:
                self.vault_readers.discard(object_id)

    def is_vault_reader(self, object_id: str) -> bool:
        with self.lock:
            return object_id in self.vault_readers

    def set_secret(
        self,
        name: str,
        value: str,
        *,
        expires: int | None = None,
        enabled: bool = True,
        content_type: str | None = None,
        not_before: int | None = None,
        managed: bool = False,
        version_id: str | None = None,
    ) -> SecretVersion:
        now = int(time.time())
        version = SecretVersion(
            version=version_id or uuid.uuid4().hex,
            value=value,
            created=now,
            updated=now,
            enabled=enabled,
            expires=expires,
            content_type=content_type,
            not_before=not_before,
            managed=managed,
        )
        with self.lock:
            self.vault.setdefault(name.lower(), []).append(version)
        return version

    def get_secret(self, name: str, version: str | None) -> SecretVersion | None:
        """The version asked for, or the latest; None if there is none."""
        with self.lock:
            return _pick_version(self.vault.get(name.lower(), []), version)

    def set_certificate(
        self, name: str, certificate_pem: str, value: str, content_type: str
    ) -> VaultCertificate:
        """A new certificate version and, under the same name and version, its secret
        (``value``: the PFX in base64 or the PEM bundle) holding the private key."""
        cert = load_certificate(certificate_pem)
        item = VaultCertificate(
            version=uuid.uuid4().hex,
            cer=cert.public_bytes(serialization.Encoding.DER),
            x5t=thumbprint(cert, "sha1"),
            subject=cert.subject.rfc4514_string(),
            not_before=int(cert.not_valid_before_utc.timestamp()),
            expires=int(cert.not_valid_after_utc.timestamp()),
            created=int(time.time()),
            content_type=content_type,
        )
        self.set_secret(
            name, value, expires=item.expires, not_before=item.not_before,
            content_type=content_type, managed=True, version_id=item.version,
        )
        with self.lock:
            self.certificates.setdefault(name.lower(), []).append(item)
        return item

    def get_certificate(self, name: str, version: str | None) -> VaultCertificate | None:
        """The version asked for, or the latest; None if there is none."""
        with self.lock:
            return _pick_version(self.certificates.get(name.lower(), []), version)

    def register_key_credential(self, certificate_pem: str) -> KeyCredential:
        credential = KeyCredential.from_pem(certificate_pem)
        with self.lock:
            self.key_credentials = [
                k for k in self.key_credentials if k.sha256 != credential.sha256
            ] + [credential]
        return credential

    def list_key_credentials(self) -> list[KeyCredential]:
        with self.lock:
            return list(self.key_credentials)

    def clear_key_credentials(self) -> None:
        with self.lock:
            self.key_credentials = []

    def find_key_credential(
        self, *, sha1: bytes | None, sha256: bytes | None
    ) -> KeyCredential | None:
        with self.lock:
            for credential in self.key_credentials:
                if sha256 is not None and credential.sha256 == sha256:
                    return credential
                if sha256 is None and sha1 is not None and credential.sha1 == sha1:
                    return credential
        return None

    def matching_client_secrets(self, value: str) -> list[ClientSecret]:
        """The app's client secrets equal to ``value`` (compared in constant time)."""
        with self.lock:
            return [s for s in self.client_secrets
                    if hmac.compare_digest(s.value.encode(), value.encode())]

    def rotate_client_secret(self, value: str | None, keep_old: bool) -> str:
        new = value or secrets.token_urlsafe(30)
        with self.lock:
            if keep_old:
                self.client_secrets.append(ClientSecret(new))
            else:
                self.client_secrets = [ClientSecret(new)]
        return new

    def expire_client_secrets(self) -> None:
        now = int(time.time()) - 1
        with self.lock:
            for item in self.client_secrets:
                item.expires = now
