"""Which part of the emulator answers a path: its admin routes, the managed-identity
endpoint, Key Vault, or Entra ID."""

from __future__ import annotations

from devstack.identity import admin, entra, managed_identity, vault
from devstack.identity.endpoint import Emulator, Reply, Request

MANAGED_IDENTITY_PATH = "/msi/token"
VAULT_PREFIXES = ("/secrets/", "/certificates/")


def route(emulator: Emulator, request: Request) -> Reply:
    """The reply of the route that owns ``request.path``; 404 when none does."""
    path = request.path
    if path.startswith(admin.PREFIX):
        return admin.handle(emulator, request)
    if path == MANAGED_IDENTITY_PATH:
        return managed_identity.handle(emulator, request)
    if path.startswith(VAULT_PREFIXES):
        return vault.handle(emulator, request)
    if (match := entra.TENANT_RE.match(path)) is not None:
        return entra.handle(emulator, request, match)
    return Reply(404, {"error": {"code": "NotFound", "message": f"No route {path}"}})
