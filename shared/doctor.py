"""``mailferry doctor``: every step of a poll, run separately, each failure mapped to its fix.

Exchange answers most mistakes with the same ``AUTHENTICATE failed``; the doctor narrows it
down by checking what can be checked on the way: the settings, Key Vault, the token's
claims, then per mailbox TCP, TLS, capabilities, login and folders. It never stops at a
failure, and never prints a secret or a token (only the token's decoded claims).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.diagnoses import DIAGNOSES, Ids
from shared.doctor_actions import after_delivery_checks
from shared.errors import ConfigurationError, FailureKind, MailferryError
from shared.folder_patterns import named_folders
from shared.model import Secret
from shared.settings import MailboxConfig, Settings
from shared.wiring import Components, load_settings

Status = Literal["ok", "fail", "warn", "skip"]
EXPIRY_WARNING = timedelta(days=30)


@dataclass
class Step:
    """One checked step: what, how it went, and what to do about it."""

    section: str
    name: str
    status: Status
    detail: str = ""
    fixes: list[str] = field(default_factory=list)
    kind: FailureKind | None = None


@dataclass
class DoctorReport:
    """Every step the doctor ran, in order."""

    steps: list[Step] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.status != "fail" for s in self.steps)

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, "claims": self.claims,
                           "steps": [asdict(s) for s in self.steps]}, indent=2, default=str)


def decode_claims(token: str) -> dict[str, Any]:
    """The token's claims, unverified: for display and checks, never for trust."""
    try:
        payload = token.split(".")[1]
        decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded


class Doctor:
    """Runs the checks against one configuration."""

    def __init__(self, env: Mapping[str, str], *, now: Callable[[], datetime] | None = None,
                 timeout: float = 10.0) -> None:
        self.env = env
        self.now = now or (lambda: datetime.now(UTC))
        self.timeout = timeout
        self.report = DoctorReport()
        self.ids = Ids()

    def run(self) -> DoctorReport:
        settings = self._settings()
        if settings is None:
            return self.report
        self.ids = Ids(client_id=settings.client_id, tenant_id=settings.tenant_id,
                       vault=settings.credentials.key_vault_url or "<vault>",
                       scope=settings.cloud.token_scope)
        # A set of its own, not the process's: the doctor checks Key Vault and Entra ID as they
        # are now, never a secret or token cached by an earlier poll.
        components = Components(settings)
        token = self._token(components)
        for mailbox in settings.mailboxes:
            self._mailbox(components, mailbox, token)
        return self.report

    # -- steps ----------------------------------------------------------------------------
    def _add(self, section: str, name: str, status: Status, detail: str = "",
             kind: FailureKind | None = None, ids: Ids | None = None) -> None:
        fixes = (ids or self.ids).fill(DIAGNOSES[kind]) if kind is not None else []
        self.report.steps.append(Step(section, name, status, detail, fixes, kind))

    def _fail(self, section: str, name: str, error: MailferryError, ids: Ids | None = None) -> None:
        self._add(section, name, "fail", str(error), error.kind, ids)

    def _settings(self) -> Settings | None:
        try:
            settings = load_settings(self.env)
        except ConfigurationError as e:
            for problem in e.problems:
                self._add("settings", problem.split(" ", 1)[0], "fail", problem, FailureKind.SETTING)
            return None
        modes = {m.protocol for m in settings.mailboxes}
        self._add("settings", "settings", "ok",
                  f"{len(settings.mailboxes)} mailbox(es) over {', '.join(sorted(modes))}; "
                  f"cloud {settings.cloud.name}; AUTH_MODE {settings.credentials.mode}")
        return settings

    def _token(self, components: Components) -> Secret | None:
        settings, tokens = components.settings, components.tokens
        credential = tokens.credential
        try:
            facts = credential.facts()
        except MailferryError as e:
            self._fail("credential", "credential readable", e)
            return None
        self._add("credential", "credential readable", "ok", f"{facts.kind} from {facts.source}"
                  + (f", thumbprint {facts.thumbprint}" if facts.thumbprint else ""))
        if facts.expires_on is not None:
            left = facts.expires_on - self.now()
            if left <= timedelta(0):
                self._add("credential", "credential expiry", "fail",
                          f"the {facts.kind} expired on {facts.expires_on:%Y-%m-%d}",
                          FailureKind.CREDENTIAL_EXPIRED)
            elif left <= EXPIRY_WARNING:
                self._add("credential", "credential expiry", "warn",
                          f"the {facts.kind} expires on {facts.expires_on:%Y-%m-%d} "
                          f"(in {left.days} days)", FailureKind.CREDENTIAL_EXPIRING)
            else:
                self._add("credential", "credential expiry", "ok",
                          f"expires on {facts.expires_on:%Y-%m-%d}")
        try:
            token = tokens.get_token()
        except MailferryError as e:
            self._fail("token", "token acquired", e)
            return None
        claims = decode_claims(token.reveal())
        shown = {k: claims.get(k) for k in ("aud", "roles", "tid", "appid", "oid", "iss")}
        if "exp" in claims:
            shown["exp"] = datetime.fromtimestamp(int(claims["exp"]), UTC).isoformat()
        self.report.claims = shown
        self._add("token", "token acquired", "ok", ", ".join(f"{k}={v}" for k, v in shown.items()))
        if claims.get("oid"):
            self.ids = Ids(**(asdict(self.ids) | {"service_principal_id": str(claims["oid"])}))
        self._check_claims(settings, claims)
        return token

    def _check_claims(self, settings: Settings, claims: Mapping[str, Any]) -> None:
        audience = str(claims.get("aud", "")).rstrip("/")
        # Exchange accepts only its own resource: compare with the cloud's, not TOKEN_SCOPE,
        # since a wrong TOKEN_SCOPE is exactly what this catches.
        expected = settings.cloud.token_audience
        if audience != expected:
            self._add("token", "token audience", "fail",
                      f"the token's audience is {audience or 'missing'}, not {expected}"
                      + (" (a Microsoft Graph token)" if "graph" in audience else ""),
                      FailureKind.TOKEN_AUDIENCE)
        else:
            self._add("token", "token audience", "ok", audience)
        roles = set(claims.get("roles") or [])
        needed = {"imap": "IMAP.AccessAsApp", "pop3": "POP.AccessAsApp"}
        for protocol in sorted({m.protocol for m in settings.mailboxes}):
            role = needed[protocol]
            if role in roles:
                self._add("token", f"role {role}", "ok")
            else:
                self._add("token", f"role {role}", "fail",
                          f"the token has no {role} role (roles: {sorted(roles) or 'none'})",
                          FailureKind.TOKEN_ROLE)
        if str(claims.get("tid", settings.tenant_id)) != settings.tenant_id:
            self._add("token", "token tenant", "fail",
                      f"the token is for tenant {claims.get('tid')}, not {settings.tenant_id}",
                      FailureKind.TOKEN_TENANT)

    def _mailbox(self, components: Components, mailbox: MailboxConfig, token: Secret | None) -> None:
        section = f"{mailbox.address} ({mailbox.protocol.upper()})"
        ids = Ids(**(asdict(self.ids) | {"mailbox": mailbox.address}))
        probe = components.connection_probe(mailbox.protocol, timeout=self.timeout)
        where = f"{probe.host}:{probe.port}"
        try:
            probe.tcp()
        except MailferryError as e:
            self._fail(section, f"TCP {where}", e, ids)
            return
        self._add(section, f"TCP {where}", "ok")
        if probe.implicit_tls:
            try:
                version = probe.tls()
            except MailferryError as e:
                self._fail(section, "TLS", e, ids)
                return
            self._add(section, "TLS", "ok", version)
        if mailbox.protocol == "pop3":
            self._pop3(components, mailbox, token, section, ids)
        else:
            self._imap(components, mailbox, token, section, ids)

    def _imap(self, components: Components, mailbox: MailboxConfig, token: Secret | None,
              section: str, ids: Ids) -> None:
        probe = components.imap_probe(timeout=self.timeout)
        try:
            try:
                capabilities = probe.connect()
            except MailferryError as e:
                self._fail(section, "IMAP greeting and capabilities", e, ids)
                return
            missing = {"AUTH=XOAUTH2"} - set(capabilities)
            self._add(section, "capabilities", "fail" if missing else "ok",
                      " ".join(capabilities), FailureKind.NO_XOAUTH2 if missing else None, ids)
            if token is None:
                self._add(section, "AUTHENTICATE XOAUTH2", "skip", "no token")
                return
            try:
                probe.login(mailbox.address, token)
            except MailferryError as e:
                self._fail(section, "AUTHENTICATE XOAUTH2", e, ids)
                return
            self._add(section, "AUTHENTICATE XOAUTH2", "ok")
            try:
                folders = probe.folders()
            except MailferryError as e:
                self._fail(section, "folders", e, ids)
                return
            absent = [f for f in named_folders(mailbox.folders) if f not in folders and f.upper() != "INBOX"]
            self._add(section, "folders", "fail" if absent else "ok",
                      f"missing: {', '.join(absent)}; the mailbox has: {', '.join(folders)}" if absent
                      else f"{', '.join(mailbox.folders)} present ({len(folders)} folders)",
                      FailureKind.FOLDER_MISSING if absent else None, ids)
            for name, status, detail, kind in after_delivery_checks(components.settings, mailbox, token,
                                                                    timeout=self.timeout):
                self._add(section, name, status, detail, kind, ids)
        finally:
            probe.close()

    def _pop3(self, components: Components, mailbox: MailboxConfig, token: Secret | None,
              section: str, ids: Ids) -> None:
        if token is None:
            self._add(section, "AUTH XOAUTH2", "skip", "no token")
            return
        server = components.pop3_server(timeout=self.timeout)
        try:
            with server.open(mailbox.address, token) as session:
                count = len(session.list_uidls())
        except MailferryError as e:
            self._fail(section, "AUTH XOAUTH2", e, ids)
            return
        self._add(section, "AUTH XOAUTH2", "ok", f"{count} message(s) in the maildrop")
        for name, status, detail, kind in after_delivery_checks(components.settings, mailbox, token,
                                                                timeout=self.timeout):
            self._add(section, name, status, detail, kind, ids)


def run_doctor(env: Mapping[str, str]) -> DoctorReport:
    """Check everything a poll needs, without stopping at the first failure."""
    return Doctor(env).run()


