"""The whole local stack: CA, identity emulator, Dovecot and Azurite, started and stopped
together and described by ``stack.json`` so another process can stop it."""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import re
import shutil
import ssl
import sys
import urllib.request
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack import azurite
from devstack._proc import (
    LOOPBACK,
    Proc,
    ServiceError,
    can_connect,
    spawn,
    tail,
    wait_until,
)
from devstack.ca import CertFiles, create_ca
from devstack.dovecot import INSPECTOR_APPID, Dovecot, DovecotPorts
from devstack.emulator import CONFIG_NAME, PORT_NAME
from devstack.identity.certs import (
    PEM_CONTENT_TYPE,
    PKCS12_CONTENT_TYPE,
    AppCertificate,
    generate_app_certificate,
)
from devstack.identity.state import EmulatorConfig
from devstack.identity.tokens import APP_ROLES, OUTLOOK_RESOURCE, SigningKey, app_claims

if TYPE_CHECKING:
    from devstack.faults.front import FaultFront

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_FILE = "stack.json"
CLIENT_SECRET_NAME = "mailferry-client-secret"
CLIENT_CERT_NAME = "mailferry-client-cert"
TOKEN_SCOPE = f"{OUTLOOK_RESOURCE}/.default"
_UID_RE = re.compile(rb"\bUID (\d+)")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


class Stack:
    """A running (or recorded) local stack. Build it with :meth:`start` or :meth:`load`."""

    def __init__(
        self,
        state_dir: Path,
        certs: CertFiles,
        config: EmulatorConfig,
        emulator_port: int,
        dovecot: Dovecot,
        azurite_ports: azurite.AzuritePorts,
        procs: dict[str, Proc],
    ) -> None:
        self.state_dir = state_dir
        self.certs = certs
        self.config = config
        self.emulator_port = emulator_port
        self.dovecot = dovecot
        self.azurite_ports = azurite_ports
        self.procs = procs
        self.signing_key = SigningKey.load(Path(config.signing_key))

    # -- life cycle -------------------------------------------------------------------
    @classmethod
    def start(cls, state_dir: Path, *, oauthbearer: bool = False, timeout: float = 30.0) -> Stack:
        """Start every service and wait until each accepts connections.

        On failure, whatever started is stopped again and :class:`ServiceError` carries
        the tail of the failing service's log.
        """
        state_dir = state_dir.resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        if (state_dir / STACK_FILE).exists():
            raise ServiceError(f"{state_dir} already holds a stack: stop it first")
        certs = create_ca(state_dir / "certs")
        emu_dir = state_dir / "emulator"
        emu_dir.mkdir(exist_ok=True)
        key = SigningKey.generate()
        key.save(emu_dir / "signing.key")
        config = EmulatorConfig(
            signing_key=str(emu_dir / "signing.key"),
            server_cert=str(certs.server_cert),
            server_key=str(certs.server_key),
        )
        config.vault_secrets = {CLIENT_SECRET_NAME: config.client_secret}
        config.vault_readers = [config.managed_identity_object_id]
        config.save(emu_dir / CONFIG_NAME)

        procs: dict[str, Proc] = {}
        dovecot: Dovecot | None = None
        try:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
            )
            procs["emulator"] = spawn(
                "emulator",
                [sys.executable, "-m", "devstack.emulator", "--state-dir", str(emu_dir),
                 "--port", "0"],
                emu_dir / "emulator.log",
                env=env,
                cwd=REPO_ROOT,
            )
            dovecot = Dovecot.prepare(
                certs=certs, tenant=config.tenant_id, public_key_pem=key.public_pem(),
                kid=key.kid, oauthbearer=oauthbearer,
            )
            procs["dovecot"] = dovecot.start(timeout)
            procs["azurite"], az_ports = azurite.start(state_dir, timeout)
            port_file = emu_dir / PORT_NAME
            wait_until(
                procs["emulator"],
                lambda: port_file.exists() and can_connect(int(port_file.read_text())),
                timeout,
                "HTTPS port",
            )
            stack = cls(
                state_dir, certs, config, int(port_file.read_text()), dovecot, az_ports, procs
            )
            stack._save()
            return stack
        except BaseException:
            for proc in reversed(procs.values()):
                proc.stop()
            if dovecot is not None:
                dovecot.remove_files()
            raise

    def _save(self) -> None:
        data = {
            "state_dir": str(self.state_dir),
            "certs": self.certs.as_dict(),
            "emulator": {"port": self.emulator_port, "config": str(self._config_path)},
            "dovecot": {
                "runtime_dir": str(self.dovecot.runtime_dir),
                "ports": self.dovecot.ports.as_dict(),
            },
            "azurite": {"ports": self.azurite_ports.as_dict()},
            "processes": {name: proc.to_dict() for name, proc in self.procs.items()},
        }
        _write_private(self.state_dir / STACK_FILE, json.dumps(data, indent=2))

    @property
    def _config_path(self) -> Path:
        return self.state_dir / "emulator" / CONFIG_NAME

    @classmethod
    def load(cls, state_dir: Path) -> Stack:
        """The stack recorded in ``state_dir/stack.json`` (started by another process)."""
        state_dir = state_dir.resolve()
        data: dict[str, Any] = json.loads((state_dir / STACK_FILE).read_text())
        config = EmulatorConfig.load(Path(data["emulator"]["config"]))
        dv = data["dovecot"]
        dovecot = Dovecot(Path(dv["runtime_dir"]), DovecotPorts(**dv["ports"]))
        procs = {name: Proc.from_dict(name, p) for name, p in data["processes"].items()}
        return cls(
            state_dir,
            CertFiles.from_dict(data["certs"]),
            config,
            int(data["emulator"]["port"]),
            dovecot,
            azurite.AzuritePorts(**data["azurite"]["ports"]),
            procs,
        )

    def restart_storage(self, timeout: float = 30.0) -> None:
        """A fresh, empty Azurite on the same ports. It keeps everything in memory, and ten
        minutes after it starts, and every ten minutes after that, its blob store cleans up
        data no blob refers to: after tens of thousands of blobs written and deleted that
        held every request for minutes. A long run that needs no earlier data starts afresh."""
        self.procs["azurite"].stop()
        self.procs["azurite"], _ = azurite.start(self.state_dir, timeout, ports=self.azurite_ports)
        self._save()

    def stop(self, *, remove_state: bool = False) -> None:
        """Stop every process by its PID (SIGTERM, wait, SIGKILL) and remove Dovecot's files."""
        for name in ("faults", "azurite", "dovecot", "emulator"):
            if name in self.procs:
                self.procs[name].stop()
        self.dovecot.remove_files()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / STACK_FILE).unlink()
        if remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_faults(self, *, timeout: float = 30.0) -> FaultFront:
        """Start the Exchange behaviour layer (``devstack.faults``) in front of this stack;
        :meth:`stop` stops it too."""
        from devstack.faults.front import FaultFront  # noqa: PLC0415 - aiohttp only when used

        if "faults" in self.procs and self.procs["faults"].alive():
            raise ServiceError(f"the fronts of {self.state_dir} are already running")
        front = FaultFront.start(self, timeout=timeout)
        self.procs["faults"] = front.proc
        self._save()
        return front

    def faults(self) -> FaultFront:
        """The fronts started by :meth:`start_faults`, here or in another process."""
        from devstack.faults.front import FaultFront  # noqa: PLC0415

        if "faults" not in self.procs:
            raise ServiceError("no fronts in this stack: start them with start_faults()")
        return FaultFront.load(self, self.state_dir / "faults", self.procs["faults"])

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def alive(self) -> dict[str, bool]:
        return {name: proc.alive() for name, proc in self.procs.items()}

    def logs(self) -> dict[str, Path]:
        return {name: proc.log for name, proc in self.procs.items()}

    def log_tail(self, name: str, lines: int = 40) -> str:
        return tail(self.procs[name].log, lines)

    # -- endpoints and identities -----------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"https://{LOOPBACK}:{self.emulator_port}"

    @property
    def authority_host(self) -> str:
        return self.base_url

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.config.tenant_id}"

    @property
    def vault_url(self) -> str:
        return f"{self.base_url}/"

    @property
    def identity_endpoint(self) -> str:
        return f"{self.base_url}/msi/token"

    @property
    def identity_header(self) -> str:
        return self.config.identity_header

    @property
    def tenant_id(self) -> str:
        return self.config.tenant_id

    @property
    def client_id(self) -> str:
        return self.config.client_id

    @property
    def client_object_id(self) -> str:
        return self.config.client_object_id

    @property
    def client_secret(self) -> str:
        """The current client secret (also stored in the vault under CLIENT_SECRET_NAME)."""
        return self.config.client_secret

    @property
    def managed_identity_client_id(self) -> str:
        return self.config.managed_identity_client_id

    @property
    def managed_identity_object_id(self) -> str:
        return self.config.managed_identity_object_id

    @property
    def ca_bundle(self) -> Path:
        return self.certs.ca_bundle

    @property
    def ca_pem(self) -> Path:
        return self.certs.ca_pem

    @property
    def imap_port(self) -> int:
        """Plain IMAP port (STARTTLS required before login)."""
        return self.dovecot.ports.imap

    @property
    def imaps_port(self) -> int:
        return self.dovecot.ports.imaps

    @property
    def pop3s_port(self) -> int:
        return self.dovecot.ports.pop3s

    @property
    def storage_connection_string(self) -> str:
        return self.azurite_ports.connection_string()

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the local CA only."""
        return ssl.create_default_context(cafile=str(self.certs.ca_pem))

    def settings_env(self, mailboxes: str) -> dict[str, str]:
        """The mailferry app settings pointing at this stack (fresh container and table)."""
        suffix = uuid.uuid4().hex[:12]
        return {
            "M365_TENANT_ID": self.tenant_id,
            "M365_CLIENT_ID": self.client_id,
            "KEY_VAULT_URL": self.vault_url,
            "CLIENT_SECRET_NAME": CLIENT_SECRET_NAME,
            "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "false",
            "MANAGED_IDENTITY_CLIENT_ID": self.managed_identity_client_id,
            "AUTHORITY_HOST": self.authority_host,
            "TOKEN_SCOPE": TOKEN_SCOPE,
            "MAILBOXES": mailboxes,
            "POLL_SCHEDULE": "0 */5 * * * *",
            "BLOB_CONTAINER": f"mail-{suffix}",
            "CHECKPOINT_TABLE": f"checkpoints{suffix}",
            "MAIL_STORAGE": self.storage_connection_string,
            "IMAP_HOST": LOOPBACK,
            "IMAP_PORT": str(self.imaps_port),
            "IMAP_SECURITY": "tls",
            "CA_BUNDLE": str(self.ca_bundle),
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
        }

    # -- emulator administration ------------------------------------------------------
    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - https to this stack only
            f"{self.base_url}/_emulator/{path}",
            data=data,
            method=method,
            headers={"X-Emulator-Key": self.config.admin_key, "Content-Type": "application/json"},
        )
        context = self.ssl_context()
        with urllib.request.urlopen(request, context=context, timeout=10) as resp:  # noqa: S310
            return json.loads(resp.read() or b"null")

    def stats(self) -> dict[str, int]:
        """Counters: token_requests, token_issued, msi_requests, vault_requests."""
        result: dict[str, int] = self._admin("GET", "stats")
        return result

    def token_request_count(self) -> int:
        """Requests to the token endpoint (MSAL cache hits do not reach it)."""
        return self.stats()["token_requests"]

    def reset_stats(self) -> None:
        self._admin("POST", "stats/reset", {})

    def rotate_client_secret(
        self, new_secret: str | None = None, *, keep_old: bool = False, update_vault: bool = True
    ) -> str:
        """Give the app a new client secret (the old one stops working unless ``keep_old``);
        by default the vault gets it as a new version of CLIENT_SECRET_NAME."""
        secret: str = self._admin(
            "POST", "client-secret", {"secret": new_secret, "keep_old": keep_old}
        )["secret"]
        if update_vault:
            self.set_vault_secret(CLIENT_SECRET_NAME, secret)
        self.config.client_secret = secret
        self.config.save(self._config_path)
        return secret

    def expire_client_secret(self) -> None:
        """Every current client secret now fails with AADSTS7000222."""
        self._admin("POST", "client-secret/expire", {})

    def set_vault_secret(
        self,
        name: str,
        value: str,
        *,
        expires: int | None = None,
        enabled: bool = True,
        content_type: str | None = None,
    ) -> str:
        """Add a version of a vault secret; returns the version id. ``expires`` (epoch
        seconds) comes back as ``attributes.exp`` (``properties.expires_on`` in the SDK):
        like Key Vault, the vault still serves the value after it."""
        version: str = self._admin(
            "PUT",
            f"secrets/{name}",
            {"value": value, "expires": expires, "enabled": enabled,
             "content_type": content_type},
        )["version"]
        return version

    def create_app_certificate(
        self,
        *,
        name: str = CLIENT_CERT_NAME,
        days_valid: int = 365,
        expired: bool = False,
        pem: bool = False,
        register: bool = True,
    ) -> AppCertificate:
        """A self-signed RSA 2048 client certificate, registered on the app (its public
        part, like an upload to the app registration) unless ``register=False``, and put in
        the vault as Key Vault keeps certificates: a certificate ``name`` and, under the same
        name and version, a secret holding the PFX in base64 (``application/x-pkcs12``) or
        with ``pem=True`` the private key and certificate in PEM (``application/x-pem-file``),
        its ``exp``/``nbf`` the certificate's validity. ``expired`` makes one whose validity
        ended a day ago."""
        cert = generate_app_certificate(name, days_valid=days_valid, expired=expired)
        self.store_vault_certificate(cert, pem=pem)
        if register:
            self.register_app_certificate(cert.certificate_pem)
        return cert

    def store_vault_certificate(self, cert: AppCertificate, *, pem: bool = False) -> str:
        """Import ``cert`` into the vault under ``cert.name``; returns the version id."""
        value, content_type = (
            (cert.pem_bundle(), PEM_CONTENT_TYPE) if pem
            else (cert.pkcs12_base64(), PKCS12_CONTENT_TYPE)
        )
        version: str = self._admin(
            "PUT",
            f"certificates/{cert.name}",
            {"certificate_pem": cert.certificate_pem, "value": value,
             "content_type": content_type},
        )["version"]
        return version

    def register_app_certificate(self, certificate_pem: str) -> None:
        """Add a certificate (PEM, public part) to the app's key credentials."""
        self._admin("POST", "app-certificates", {"certificate_pem": certificate_pem})

    def app_certificates(self) -> list[dict[str, Any]]:
        """The registered certificates: ``thumbprint_sha1``/``thumbprint_sha256`` (hex),
        ``start``/``end`` (epoch seconds)."""
        result: list[dict[str, Any]] = self._admin("GET", "app-certificates")
        return result

    def unregister_app_certificates(self) -> None:
        """Remove every certificate from the app: their assertions fail with AADSTS700027."""
        self._admin("POST", "app-certificates/clear", {})

    def set_app_roles(self, roles: Iterable[str]) -> None:
        """Application permissions (with admin consent) put in the app's Outlook tokens."""
        self._admin("POST", "app-roles", {"roles": list(roles)})

    def set_vault_reader(self, object_id: str, granted: bool = True) -> None:
        self._admin("POST", "vault-readers", {"object_id": object_id, "granted": granted})

    def public_key_pem(self) -> bytes:
        return self.signing_key.public_pem()

    def issue_token(
        self, *, key: SigningKey | None = None, kid: str | None = None, **claim_overrides: Any
    ) -> str:
        """An Outlook access token for the app, signed with the emulator's key (or ``key``).

        ``claim_overrides`` replace claims; a value of ``None`` removes the claim.
        """
        claims = app_claims(
            tenant=self.tenant_id, client_id=self.client_id, object_id=self.client_object_id,
            audience=OUTLOOK_RESOURCE, roles=list(APP_ROLES),
        )
        for name, value in claim_overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        signer = key or self.signing_key
        return signer.sign(claims, kid=kid if kid is not None else self.signing_key.kid)

    # -- mailboxes --------------------------------------------------------------------
    def add_mailbox(self, address: str, *, granted: bool = True) -> None:
        """Create a mailbox (INBOX); ``granted`` gives the app FullAccess on it."""
        self.dovecot.add_mailbox(address)
        if granted:
            self.grant(address)

    def grant(self, address: str, principal: str | None = None) -> None:
        """``Add-MailboxPermission -AccessRights FullAccess`` for the app (or ``principal``)."""
        self.dovecot.set_grant(address, principal or self.client_id, True)

    def revoke(self, address: str, principal: str | None = None) -> None:
        self.dovecot.set_grant(address, principal or self.client_id, False)

    def mailboxes(self) -> dict[str, set[str]]:
        return self.dovecot.mailboxes()

    def create_folder(self, address: str, folder: str) -> None:
        self.dovecot.create_folder(address, folder)

    def append(self, address: str, folder: str, raw: bytes) -> None:
        """Store one message (``doveadm save``)."""
        self.dovecot.save(address, folder, raw)

    def seed_mailboxes(self, mailboxes: Mapping[str, Sequence[bytes]]) -> None:
        """Create granted mailboxes holding these INBOX messages, without IMAP: for many
        mailboxes or messages at once (see ``Dovecot.seed_mailboxes``)."""
        self.dovecot.seed_mailboxes(mailboxes, granted_to=self.client_id)

    def append_many(self, address: str, folder: str, messages: Iterable[bytes]) -> int:
        """Store many messages over one IMAP connection (APPEND); returns how many."""
        count = 0
        with self.imap_session(address) as conn:
            for raw in messages:
                typ, data = conn.append(_quote(folder), "", None, raw)
                if typ != "OK":
                    raise ServiceError(f"APPEND to {address}/{folder} failed: {data!r}")
                count += 1
        return count

    def set_uidvalidity(self, address: str, folder: str, value: int) -> None:
        self.dovecot.set_uidvalidity(address, folder, value)

    def mailbox_status(self, address: str, folder: str) -> dict[str, int]:
        """``messages``, ``uidnext`` and ``uidvalidity`` of a folder."""
        return self.dovecot.status(address, folder)

    def xoauth2(self, address: str, token: str) -> bytes:
        """The SASL XOAUTH2 initial response for ``address``."""
        return f"user={address}\x01auth=Bearer {token}\x01\x01".encode()

    def imap_session(self, address: str) -> _ImapSession:
        """An IMAP session (implicit TLS) logged in to ``address`` regardless of grants."""
        token = self.issue_token(appid=INSPECTOR_APPID, oid=INSPECTOR_APPID, sub=INSPECTOR_APPID)
        return _ImapSession(self, address, token)

    def server_messages(self, address: str, folder: str) -> dict[int, bytes]:
        """UID → the exact bytes the server returns for ``BODY.PEEK[]``."""
        with self.imap_session(address) as conn:
            typ, data = conn.select(_quote(folder), readonly=True)
            if typ != "OK":
                raise ServiceError(f"cannot select {address}/{folder}: {data!r}")
            if int(data[0] or b"0") == 0:
                return {}
            typ, items = conn.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
            if typ != "OK":
                raise ServiceError(f"FETCH in {address}/{folder} failed: {items!r}")
            result: dict[int, bytes] = {}
            for item in items:
                if isinstance(item, tuple):
                    match = _UID_RE.search(item[0])
                    if match is None:
                        raise ServiceError(f"no UID in FETCH response {item[0]!r}")
                    result[int(match.group(1))] = item[1]
            return result


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _ImapSession:
    def __init__(self, stack: Stack, address: str, token: str) -> None:
        self.stack = stack
        self.address = address
        self.token = token
        self.conn: imaplib.IMAP4_SSL | None = None

    def __enter__(self) -> imaplib.IMAP4_SSL:
        conn = imaplib.IMAP4_SSL(
            LOOPBACK, self.stack.imaps_port, ssl_context=self.stack.ssl_context(), timeout=30
        )
        self.conn = conn
        answers = iter([self.stack.xoauth2(self.address, self.token)])
        try:
            conn.authenticate("XOAUTH2", lambda _: next(answers, b""))
        except BaseException:
            conn.shutdown()
            raise
        return conn

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            try:
                self.conn.logout()
            except (imaplib.IMAP4.error, OSError):
                self.conn.shutdown()
            self.conn = None
