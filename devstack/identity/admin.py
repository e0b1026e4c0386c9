"""The stack's own routes under ``/_emulator/`` (behind the admin key): counters, client
secrets, app roles and certificates, vault readers, secrets and certificates in the vault."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from devstack.identity.endpoint import Emulator, Reply, Request
from devstack.identity.state import EmulatorState, KeyCredential

PREFIX = "/_emulator/"

# An admin action takes the state and the request's JSON body; it answers 200 with JSON.
Action = Callable[[EmulatorState, dict[str, Any]], Any]
# An action on a named item (``PUT /_emulator/secrets/{name}``) also takes the name.
NamedAction = Callable[[EmulatorState, str, dict[str, Any]], Any]


def _key_credential_json(credential: KeyCredential) -> dict[str, Any]:
    return {
        "thumbprint_sha1": credential.sha1.hex().upper(),
        "thumbprint_sha256": credential.sha256.hex().upper(),
        "start": credential.start,
        "end": credential.end,
    }


def _reset_stats(state: EmulatorState, data: dict[str, Any]) -> Any:
    state.reset_counters()
    return {}


def _rotate_client_secret(state: EmulatorState, data: dict[str, Any]) -> Any:
    return {"secret": state.rotate_client_secret(data.get("secret"), bool(data.get("keep_old")))}


def _expire_client_secrets(state: EmulatorState, data: dict[str, Any]) -> Any:
    state.expire_client_secrets()
    return {}


def _set_app_roles(state: EmulatorState, data: dict[str, Any]) -> Any:
    return {"roles": state.set_app_roles([str(r) for r in data.get("roles", [])])}


def _set_vault_reader(state: EmulatorState, data: dict[str, Any]) -> Any:
    state.set_vault_reader(str(data["object_id"]), granted=bool(data.get("granted", True)))
    return {}


def _register_app_certificate(state: EmulatorState, data: dict[str, Any]) -> Any:
    return _key_credential_json(state.register_key_credential(str(data["certificate_pem"])))


def _list_app_certificates(state: EmulatorState, data: dict[str, Any]) -> Any:
    return [_key_credential_json(k) for k in state.list_key_credentials()]


def _clear_app_certificates(state: EmulatorState, data: dict[str, Any]) -> Any:
    state.clear_key_credentials()
    return {}


def _put_secret(state: EmulatorState, name: str, data: dict[str, Any]) -> Any:
    item = state.set_secret(
        name, str(data["value"]), expires=data.get("expires"),
        enabled=bool(data.get("enabled", True)), content_type=data.get("content_type"),
    )
    return {"version": item.version}


def _put_certificate(state: EmulatorState, name: str, data: dict[str, Any]) -> Any:
    cert = state.set_certificate(
        name, str(data["certificate_pem"]), str(data["value"]), str(data["content_type"])
    )
    return {"version": cert.version}


ACTIONS: dict[tuple[str, str], Action] = {
    ("GET", "stats"): lambda state, data: state.counters_snapshot(),
    ("POST", "stats/reset"): _reset_stats,
    ("POST", "client-secret"): _rotate_client_secret,
    ("POST", "client-secret/expire"): _expire_client_secrets,
    ("POST", "app-roles"): _set_app_roles,
    ("POST", "vault-readers"): _set_vault_reader,
    ("POST", "app-certificates"): _register_app_certificate,
    ("GET", "app-certificates"): _list_app_certificates,
    ("POST", "app-certificates/clear"): _clear_app_certificates,
}
NAMED_ACTIONS: dict[tuple[str, str], NamedAction] = {
    ("PUT", "secrets"): _put_secret,
    ("PUT", "certificates"): _put_certificate,
}


def handle(emulator: Emulator, request: Request) -> Reply:
    """A request under :data:`PREFIX`, refused without the ``X-Emulator-Key`` header."""
    key = request.headers.get("X-Emulator-Key", "")
    if not hmac.compare_digest(key.encode(), emulator.state.config.admin_key.encode()):
        return Reply(401, {"error": "admin key required"})
    data: dict[str, Any] = json.loads(request.body) if request.body else {}
    route = request.path.removeprefix(PREFIX)
    action = ACTIONS.get((request.method, route))
    if action is not None:
        return Reply(200, action(emulator.state, data))
    collection, _, name = route.rpartition("/")
    named = NAMED_ACTIONS.get((request.method, collection))
    if named is not None:
        return Reply(200, named(emulator.state, name, data))
    return Reply(404, {"error": f"no admin route {request.method} {request.path}"})
