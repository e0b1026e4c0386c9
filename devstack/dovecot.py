"""A private Dovecot instance standing in for Exchange Online IMAP/POP3 with XOAUTH2.

Authentication is a chain of two passdbs:

1. a Lua passdb (``auth.lua``, from ``auth.lua.tmpl``) that sees the login name and the
   bearer token: the mailbox must exist, the token must carry ``IMAP.AccessAsApp``
   (``POP.AccessAsApp`` for POP3) and the app must be granted FullAccess on the mailbox
   (the ``grants`` file, edited at run time through :class:`Dovecot`);
2. the ``oauth2`` passdb with ``introspection_mode = local``, which checks the RS256
   signature against the emulator's public key, ``iss``, ``aud`` and ``exp``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack._proc import LOOPBACK, Proc, ServiceError, can_connect, free_port, spawn, wait_until
from devstack.ca import CertFiles
from devstack.identity.tokens import OUTLOOK_RESOURCE, issuer_for
from devstack.maildir import write_maildir

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
NOBODY = 65534
# Exchange Online's post-login capabilities (no CONDSTORE, QRESYNC or ESEARCH).
IMAP_CAPABILITY = "IMAP4 IMAP4rev1 SASL-IR UIDPLUS ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+ MOVE"
INSPECTOR_APPID = "00000000-0000-0000-0000-00000000feed"


@dataclass
class DovecotPorts:
    imap: int  # plain, STARTTLS required before login
    imaps: int  # implicit TLS
    pop3s: int  # implicit TLS

    def as_dict(self) -> dict[str, int]:
        return {"imap": self.imap, "imaps": self.imaps, "pop3s": self.pop3s}


class Dovecot:
    """Configuration, process and mailbox administration of one instance."""

    def __init__(self, runtime_dir: Path, ports: DovecotPorts) -> None:
        self.runtime_dir = runtime_dir
        self.ports = ports

    # -- paths ------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.runtime_dir / "dovecot.conf"

    @property
    def log(self) -> Path:
        return self.runtime_dir / "dovecot.log"

    @property
    def grants_file(self) -> Path:
        return self.runtime_dir / "grants"

    @property
    def mail_root(self) -> Path:
        return self.runtime_dir / "mail"

    # -- setup ------------------------------------------------------------------------
    @classmethod
    def prepare(
        cls,
        *,
        certs: CertFiles,
        tenant: str,
        public_key_pem: bytes,
        kid: str,
        oauthbearer: bool = False,
        ssl_required: bool = True,
    ) -> Dovecot:
        """Write a configuration under a fresh short directory in /tmp.

        The directory is outside the caller's state dir on purpose: its UNIX sockets need
        short paths, and the unprivileged auth and mail processes must be able to reach it.
        """
        runtime = Path(tempfile.mkdtemp(prefix="mfdc-", dir="/tmp"))
        runtime.chmod(0o755)
        ports = DovecotPorts(imap=free_port(), imaps=free_port(), pop3s=free_port())
        inst = cls(runtime, ports)
        inst._write_files(certs, tenant, public_key_pem, kid, oauthbearer, ssl_required)
        return inst

    def _write_files(
        self,
        certs: CertFiles,
        tenant: str,
        public_key_pem: bytes,
        kid: str,
        oauthbearer: bool,
        ssl_required: bool,
    ) -> None:
        rt = self.runtime_dir
        for sub in ("run", "state", "mail"):
            (rt / sub).mkdir(mode=0o755, exist_ok=True)
        # Local validation keys: keys/<azp|default>/<alg>/<kid|default>.
        key_dir = rt / "keys" / "default" / "RS256"
        key_dir.mkdir(parents=True, exist_ok=True)
        for name in (kid, "default"):
            (key_dir / name).write_bytes(public_key_pem)
        for path in (rt / "keys", rt / "keys" / "default", key_dir):
            path.chmod(0o755)
        self.grants_file.write_text("")
        self.grants_file.chmod(0o644)
        lua = (Path(__file__).with_name("auth.lua.tmpl")).read_text()
        lua = lua.replace("@GRANTS_FILE@", str(self.grants_file))
        lua = lua.replace("@INSPECTOR_APPID@", INSPECTOR_APPID)
        (rt / "auth.lua").write_text(lua)
        (rt / "oauth2.conf").write_text(
            "introspection_mode = local\n"
            f"local_validation_key_dict = fs:posix:prefix={rt}/keys/\n"
            f"issuers = {issuer_for(tenant)}\n"
            f"audience = {OUTLOOK_RESOURCE}\n"
            # App-only tokens carry no mailbox claim: compare a constant instead; the Lua
            # passdb before this one decides which app may open which mailbox.
            "username_attribute = appid\n"
            "username_format = app\n"
        )
        root = os.geteuid() == 0
        if root:
            os.chown(rt / "mail", NOBODY, NOBODY)
            users = (
                "default_internal_user = dovecot\n"
                "default_login_user = dovenull\n"
                f"mail_uid = {NOBODY}\nmail_gid = {NOBODY}\n"
            )
            userdb_ids = f"uid={NOBODY} gid={NOBODY} "
        else:
            import pwd  # noqa: PLC0415

            me = pwd.getpwuid(os.geteuid()).pw_name
            users = f"default_internal_user = {me}\ndefault_login_user = {me}\n"
            userdb_ids = ""
        mechanisms = "xoauth2 oauthbearer" if oauthbearer else "xoauth2"
        ssl = "required" if ssl_required else "yes"
        p = self.ports
        conf = f"""\
# Private instance for the local test stack.
instance_name = {rt.name}
base_dir = {rt}/run
state_dir = {rt}/state
protocols = imap pop3
listen = {LOOPBACK}
shutdown_clients = yes
log_path = {self.log}
info_log_path = {self.log}
{users}
ssl = {ssl}
ssl_cert = <{certs.server_cert}
ssl_key = <{certs.server_key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes

auth_mechanisms = {mechanisms}
auth_failure_delay = 0
auth_verbose = yes
auth_verbose_passwords = no
auth_cache_size = 0

mail_location = maildir:~/Maildir
mail_fsync = never
mail_privileged_group =
first_valid_uid = 1
mailbox_list_index = yes
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
}}

imap_capability = {IMAP_CAPABILITY}
imap_max_line_length = 2M
pop3_uidl_format = %08Xu%08Xv

passdb {{
  driver = lua
  args = file={rt}/auth.lua blocking=yes
  result_success = continue-fail
  result_failure = return-fail
  result_internalfail = return-fail
}}
passdb {{
  driver = oauth2
  mechanisms = {mechanisms}
  args = {rt}/oauth2.conf
}}
userdb {{
  driver = static
  args = {userdb_ids}home={rt}/mail/%Lu allow_all_users=yes
}}

# Login processes each serve many connections, and an imap process serves one after
# another: Exchange's CPU is not on the client's machine, and the forks and TLS set-up per
# connection here cost 16-22 ms of the cores the client and Azurite share.
service imap-login {{
  service_count = 0
  inet_listener imap {{
    address = {LOOPBACK}
    port = {p.imap}
  }}
  inet_listener imaps {{
    address = {LOOPBACK}
    port = {p.imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  service_count = 0
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    address = {LOOPBACK}
    port = {p.pop3s}
    ssl = yes
  }}
}}
service imap {{
  service_count = 0
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
        self.config.write_text(conf)

    # -- process ----------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> Proc:
        check = subprocess.run(
            [DOVECOT, "-c", str(self.config), "-n"], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise ServiceError(f"dovecot rejected {self.config}:\n{check.stderr}")
        proc = spawn("dovecot", [DOVECOT, "-F", "-c", str(self.config)], self.runtime_dir / "stdout.log")
        proc.log = self.log
        ports = (self.ports.imap, self.ports.imaps, self.ports.pop3s)
        wait_until(proc, lambda: all(can_connect(x) for x in ports), timeout, "IMAP/POP3 ports")
        return proc

    def remove_files(self) -> None:
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    # -- mailboxes and grants ---------------------------------------------------------
    def _read_grants(self) -> tuple[list[str], dict[str, set[str]]]:
        order: list[str] = []
        grants: dict[str, set[str]] = {}
        for line in self.grants_file.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].lower() not in grants:
                order.append(parts[1].lower())
                grants[parts[1].lower()] = set()
            if len(parts) == 3 and parts[0] == "grant":
                grants[parts[1].lower()].add(parts[2].lower())
        return order, grants

    def _write_grants(self, order: list[str], grants: dict[str, set[str]]) -> None:
        lines: list[str] = []
        for box in order:
            lines.append(f"mailbox {box}")
            lines.extend(f"grant {box} {p}" for p in sorted(grants[box]))
        tmp = self.grants_file.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in lines))
        tmp.chmod(0o644)
        tmp.replace(self.grants_file)

    def mailboxes(self) -> dict[str, set[str]]:
        """Mailbox address → principals (app IDs or object IDs) granted FullAccess."""
        return self._read_grants()[1]

    def add_mailbox(self, address: str) -> None:
        order, grants = self._read_grants()
        key = address.lower()
        if key not in grants:
            order.append(key)
            grants[key] = set()
            self._write_grants(order, grants)
        self.doveadm("mailbox", "status", "-u", address, "uidvalidity", "INBOX")

    def set_grant(self, address: str, principal: str, granted: bool) -> None:
        order, grants = self._read_grants()
        key = address.lower()
        if key not in grants:
            raise KeyError(f"no mailbox {address}")
        if granted:
            grants[key].add(principal.lower())
        else:
            grants[key].discard(principal.lower())
        self._write_grants(order, grants)

    def doveadm(self, *args: str, stdin: bytes | None = None) -> str:
        result = subprocess.run(
            [DOVEADM, "-c", str(self.config), *args],
            input=stdin,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"doveadm {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout.decode(errors="replace")

    def seed_mailboxes(self, mailboxes: Mapping[str, Sequence[bytes]], *, granted_to: str) -> None:
        """Create mailboxes with INBOX messages by writing maildir files, then index them all
        in one doveadm run: APPEND costs a login per mailbox and a round trip per message.

        Messages read back as written, except that a bare LF reads back as CRLF.
        """
        order, grants = self._read_grants()
        for address in mailboxes:
            key = address.lower()
            if key not in grants:
                order.append(key)
                grants[key] = set()
            grants[key].add(granted_to.lower())
        self._write_grants(order, grants)
        owner = NOBODY if os.geteuid() == 0 else None
        for address, messages in mailboxes.items():
            write_maildir(self.mail_root / address.lower() / "Maildir", messages, owner=owner)
        users = self.runtime_dir / "seeded-users"
        users.write_text("".join(f"{address}\n" for address in mailboxes))
        self.doveadm("mailbox", "status", "-F", str(users), "messages", "INBOX")

    def create_folder(self, address: str, folder: str) -> None:
        self.doveadm("mailbox", "create", "-u", address, folder)

    def save(self, address: str, folder: str, raw: bytes) -> None:
        self.doveadm("save", "-u", address, "-m", folder, stdin=raw)

    def set_uidvalidity(self, address: str, folder: str, value: int) -> None:
        self.doveadm("mailbox", "update", "-u", address, "--uid-validity", str(value), folder)

    def status(self, address: str, folder: str) -> dict[str, int]:
        out = self.doveadm(
            "-f", "flow", "mailbox", "status", "-u", address,
            "messages uidnext uidvalidity", folder,
        )
        values: dict[str, int] = {}
        for item in out.split():
            name, _, value = item.partition("=")
            if value.isdigit():
                values[name] = int(value)
        return values
