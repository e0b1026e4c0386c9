"""The identity emulator's plumbing over HTTPS: routes it does not know, its admin routes,
internal errors, reply headers, and connections kept alive across refused requests."""

from __future__ import annotations

from typing import Any

import requests

from devstack.stack import CLIENT_SECRET_NAME, TOKEN_SCOPE, Stack


def _admin(
    stack: Stack, http: requests.Session, method: str, path: str, *,
    key: str | None = None, body: Any = None,
) -> requests.Response:
    headers = {"X-Emulator-Key": stack.config.admin_key if key is None else key}
    return http.request(method, f"{stack.base_url}/_emulator/{path}", json=body,
                        headers=headers)


def test_unknown_route_is_404(stack: Stack, http: requests.Session) -> None:
    for path in ("/", "/nowhere", f"/{stack.tenant_id}/oauth2/v2.0/authorize", "/msi/token/x"):
        reply = http.get(f"{stack.base_url}{path}")
        assert reply.status_code == 404, path
        assert reply.json() == {"error": {"code": "NotFound", "message": f"No route {path}"}}


def test_replies_are_uncached_json(stack: Stack, http: requests.Session) -> None:
    reply = http.get(f"{stack.authority}/discovery/v2.0/keys")
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert reply.headers["Cache-Control"] == "no-store, no-cache"
    assert reply.headers["Server"].startswith("devstack-identity")
    assert int(reply.headers["Content-Length"]) == len(reply.content)


def test_admin_routes_need_the_key(stack: Stack, http: requests.Session) -> None:
    for key in ("", "wrong"):
        reply = _admin(stack, http, "GET", "stats", key=key)
        assert reply.status_code == 401
        assert reply.json() == {"error": "admin key required"}
    wrong_method = _admin(stack, http, "GET", "client-secret/expire")
    assert wrong_method.status_code == 404
    assert wrong_method.json() == {"error": "no admin route GET /_emulator/client-secret/expire"}
    assert _admin(stack, http, "POST", "nothing", body={}).status_code == 404


def test_stats_reset_and_app_roles(stack: Stack, http: requests.Session) -> None:
    reset = _admin(stack, http, "POST", "stats/reset", body={})
    assert reset.status_code == 200 and reset.json() == {}
    assert stack.stats() == {
        "token_requests": 0, "token_issued": 0, "msi_requests": 0, "vault_requests": 0,
    }
    try:
        roles = _admin(stack, http, "POST", "app-roles", body={"roles": ["IMAP.AccessAsApp"]})
        assert roles.json() == {"roles": ["IMAP.AccessAsApp"]}
    finally:
        stack.set_app_roles(["IMAP.AccessAsApp", "POP.AccessAsApp"])


def test_bad_admin_request_is_500_and_the_server_carries_on(
    stack: Stack, http: requests.Session
) -> None:
    broken = _admin(stack, http, "POST", "vault-readers", body={"granted": True})
    assert broken.status_code == 500
    assert broken.json() == {"error": {"code": "InternalError", "message": "emulator error"}}
    assert "internal error for POST /_emulator/vault-readers" in stack.log_tail("emulator")
    assert _admin(stack, http, "GET", "stats").status_code == 200


def test_refused_request_with_a_body_leaves_the_connection_usable(
    stack: Stack, http: requests.Session
) -> None:
    """Each refusal reads the request's body, so the next request on the same kept-alive
    connection is parsed from its own first line (and no body reaches the log as one)."""
    form = {"grant_type": "client_credentials", "client_id": stack.client_id,
            "client_secret": stack.client_secret, "scope": TOKEN_SCOPE}
    refusals = [
        ("PUT", f"{stack.vault_url}secrets/{CLIENT_SECRET_NAME}?api-version=7.5", 405, {}),
        ("POST", f"{stack.vault_url}secrets/bad_name?api-version=7.5", 405, {}),
        ("POST", f"{stack.base_url}/_emulator/stats", 401, {"X-Emulator-Key": "wrong"}),
        ("POST", f"{stack.base_url}/nowhere", 404, {}),
        ("POST", f"{stack.authority}/v2.0/.well-known/openid-configuration", 405, {}),
        ("POST", f"{stack.base_url}/{'0' * 8}/oauth2/v2.0/token", 400, {}),
    ]
    for method, url, status, headers in refusals:
        assert http.request(method, url, data=form, headers=headers).status_code == status, url
        following = http.post(f"{stack.authority}/oauth2/v2.0/token", data=form)
        assert following.status_code == 200, (url, following.status_code)
    assert stack.client_secret not in stack.log_tail("emulator", 200)
