"""infra/tenant/setup-entra.sh against a local Graph that checks every request it sends.

The script runs under bash with ``az`` replaced by tests/az_stub.py: ``az rest`` reaches the fake
Graph of tests/fake_graph.py (started on a free port on 127.0.0.1 and stopped by PID), whose
recorded contract refuses a request of the wrong URL, method or body; the other ``az`` commands
answer from a scenario.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "infra" / "tenant" / "setup-entra.sh"
TENANT_ID = "72f988bf-0000-4000-8000-000000000001"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
EXCHANGE_SP = "e0e0e0e0-0000-4000-8000-00000000e0e0"
IMAP_ROLE = "5e5addcf-0000-4000-8000-000000000111"
POP_ROLE = "5e5addcf-0000-4000-8000-000000000222"
APP_ID = "a1a1a1a1-0000-4000-8000-00000000a1a1"
APP_SP = "b2b2b2b2-0000-4000-8000-00000000b2b2"
STARTUP_SECONDS = 10


def tenant(*, granted: tuple[str, ...] = (), deny_grants: bool = False) -> dict[str, Any]:
    """A tenant with Exchange Online's service principal and the app's, as Graph describes them."""
    roles = [
        {"id": IMAP_ROLE, "value": "IMAP.AccessAsApp", "allowedMemberTypes": ["Application"]},
        {"id": POP_ROLE, "value": "POP.AccessAsApp", "allowedMemberTypes": ["Application"]},
        {"id": "5e5addcf-0000-4000-8000-000000000333", "value": "IMAP.AccessAsUser.All", "allowedMemberTypes": ["User"]},
    ]
    return {
        "domains": ["contoso.com"],
        "servicePrincipals": [
            {"id": EXCHANGE_SP, "appId": EXCHANGE_APP_ID, "displayName": "Office 365 Exchange Online", "appRoles": roles},
            {"id": APP_SP, "appId": APP_ID, "displayName": "mailferry", "appRoles": []},
        ],
        "appRoleAssignments": [
            {"id": f"existing-{r}", "principalId": APP_SP, "resourceId": EXCHANGE_SP, "appRoleId": r} for r in granted
        ],
        "denyGrants": deny_grants,
    }


# Every az command the script runs besides `az rest`, for an app that exists and requested IMAP
# and POP, with its client secret already in the vault.
SCENARIO = [
    {"command": "account show", "query": "tenantId", "output": TENANT_ID},
    {"command": "ad app show", "query": "appId", "output": APP_ID},
    {"command": "ad app show", "query": "requiredResourceAccess", "output": f"{IMAP_ROLE}\n{POP_ROLE}"},
    {"command": "ad sp list", "query": "[0].id", "output": APP_SP},
    {"command": "keyvault secret list", "query": "].name", "output": "mailferry-client-secret"},
    {"command": "keyvault secret list", "query": "tags.appId", "output": APP_ID},
]


@dataclass
class GraphRun:
    """One run of the script: its result and what the fake Graph received and holds."""

    result: subprocess.CompletedProcess[str]
    requests: list[dict[str, Any]]
    tenant: dict[str, Any]
    az_calls: list[list[str]]


@dataclass
class FakeGraphProcess:
    """The fake Graph server process and its files."""

    base_url: str
    tenant_file: Path
    log_file: Path


@pytest.fixture
def fake_graph(tmp_path: Path) -> Iterator[FakeGraphProcess]:
    """tests/fake_graph.py on a free port of 127.0.0.1, stopped by its PID afterwards."""
    tenant_file, log_file, port_file = tmp_path / "tenant.json", tmp_path / "graph.jsonl", tmp_path / "port"
    tenant_file.write_text(json.dumps(tenant()), encoding="utf-8")
    log_file.touch()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_graph", "--tenant", str(tenant_file), "--log", str(log_file),
         "--port-file", str(port_file)],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the fake Graph did not start (exit code {process.poll()})")
            time.sleep(0.05)
        yield FakeGraphProcess(f"http://127.0.0.1:{port_file.read_text()}/v1.0", tenant_file, log_file)
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_script(graph: FakeGraphProcess, tmp_path: Path, *arguments: str,
               tenant_state: dict[str, Any] | None = None) -> GraphRun:
    """Runs setup-entra.sh with the stub az on PATH and Graph at the fake."""
    if tenant_state is not None:
        graph.tenant_file.write_text(json.dumps(tenant_state), encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    az = bin_dir / "az"
    az.write_text(f"#!{sys.executable}\nimport sys\nfrom tests.az_stub import main\nraise SystemExit(main(sys.argv[1:]))\n",
                  encoding="utf-8")
    az.chmod(0o755)
    (tmp_path / "scenario.json").write_text(json.dumps(SCENARIO), encoding="utf-8")
    az_log = tmp_path / "az.jsonl"
    az_log.write_text("", encoding="utf-8")
    graph.log_file.write_text("", encoding="utf-8")
    environment = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
        "MAILFERRY_GRAPH_URL": graph.base_url, "AZ_STUB_GRAPH": graph.base_url,
        "AZ_STUB_SCENARIO": str(tmp_path / "scenario.json"), "AZ_STUB_LOG": str(az_log),
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), "--tenant", TENANT_ID, "--key-vault", "kv-mf-test", "--app-id", APP_ID, *arguments],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
    )
    return GraphRun(
        result,
        [json.loads(line) for line in graph.log_file.read_text(encoding="utf-8").splitlines()],
        json.loads(graph.tenant_file.read_text(encoding="utf-8")),
        [json.loads(line) for line in az_log.read_text(encoding="utf-8").splitlines()],
    )


def consent(role: str) -> dict[str, Any]:
    """The one request Graph documents for granting an application permission of Exchange Online."""
    return {
        "method": "POST",
        "path": f"/v1.0/servicePrincipals/{EXCHANGE_SP}/appRoleAssignedTo",
        "query": "",
        "body": {"principalId": APP_SP, "resourceId": EXCHANGE_SP, "appRoleId": role},
    }


LOOKUPS = [
    {"method": "GET", "path": f"/v1.0/servicePrincipals(appId='{EXCHANGE_APP_ID}')", "query": "$select=id,appRoles",
     "body": None},
] * 2 + [{"method": "GET", "path": f"/v1.0/servicePrincipals/{APP_SP}/appRoleAssignments", "query": "", "body": None}]


def grants(run: GraphRun) -> set[tuple[str, str, str]]:
    """The app role assignments the tenant holds: (client, resource, role)."""
    return {(a["principalId"], a["resourceId"], a["appRoleId"]) for a in run.tenant["appRoleAssignments"]}


def test_admin_consent_posts_to_the_resource_service_principal(fake_graph: FakeGraphProcess, tmp_path: Path) -> None:
    run = run_script(fake_graph, tmp_path)
    assert run.result.returncode == 0, run.result.stderr
    assert run.requests == [*LOOKUPS, consent(IMAP_ROLE)]
    assert grants(run) == {(APP_SP, EXCHANGE_SP, IMAP_ROLE)}
    assert "IMAP.AccessAsApp: granted now" in run.result.stdout


def test_each_protocol_gets_its_own_grant(fake_graph: FakeGraphProcess, tmp_path: Path) -> None:
    run = run_script(fake_graph, tmp_path, "--protocols", "IMAP,POP")
    assert run.result.returncode == 0, run.result.stderr
    lookups = [LOOKUPS[0]] * 3 + [LOOKUPS[-1]]
    assert run.requests == [*lookups, consent(IMAP_ROLE), consent(POP_ROLE)]
    assert grants(run) == {(APP_SP, EXCHANGE_SP, IMAP_ROLE), (APP_SP, EXCHANGE_SP, POP_ROLE)}


def test_a_second_run_grants_nothing_again(fake_graph: FakeGraphProcess, tmp_path: Path) -> None:
    run = run_script(fake_graph, tmp_path, tenant_state=tenant(granted=(IMAP_ROLE,)))
    assert run.result.returncode == 0, run.result.stderr
    assert run.requests == LOOKUPS
    assert "IMAP.AccessAsApp: granted" in run.result.stdout


def test_dry_run_shows_the_grant_and_sends_nothing(fake_graph: FakeGraphProcess, tmp_path: Path) -> None:
    run = run_script(fake_graph, tmp_path, "--dry-run")
    assert run.result.returncode == 0, run.result.stderr
    assert run.requests == LOOKUPS
    assert f"would run: az rest --method post --url {fake_graph.base_url}/servicePrincipals/{EXCHANGE_SP}/appRoleAssignedTo" \
        in run.result.stderr
    assert grants(run) == set()


def test_a_refused_grant_stops_the_script(fake_graph: FakeGraphProcess, tmp_path: Path) -> None:
    run = run_script(fake_graph, tmp_path, tenant_state=tenant(deny_grants=True))
    assert run.result.returncode != 0
    assert "Authorization_RequestDenied" in run.result.stderr
    assert "granted now" not in run.result.stdout
    # Nothing after the failed grant ran: the client secret step never looked at the vault.
    assert not any(call[:2] == ["keyvault", "secret"] for call in run.az_calls)


def test_the_contract_refuses_a_grant_on_the_client_service_principal(fake_graph: FakeGraphProcess) -> None:
    """The shape the script used to send: the client's ID in the URL is not what Graph documents."""
    import urllib.error
    import urllib.request

    body = json.dumps({"principalId": APP_SP, "resourceId": EXCHANGE_SP, "appRoleId": IMAP_ROLE}).encode()
    request = urllib.request.Request(  # noqa: S310 - the fake Graph on 127.0.0.1
        f"{fake_graph.base_url}/servicePrincipals/{APP_SP}/appRoleAssignedTo", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - the fake Graph on 127.0.0.1
    refused.value.close()
    assert refused.value.code == 400
