"""What a deployment of infra/bicep would send to Azure, for the parameters azd passes.

main.bicep and its modules are evaluated (tests/bicep_evaluator.py, on the tree-sitter Bicep
grammar) with parameters from main.bicepparam and an azd-like environment, so these tests check
resources and their properties, not the wording of the source.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tree_sitter_powershell
import yaml
from tree_sitter import Language, Parser

from tests.bicep_evaluator import (
    PUBLIC_CLOUD,
    US_GOVERNMENT_CLOUD,
    Deployment,
    InvalidParameter,
    deploy,
    deploy_with_bicepparam,
    syntax_errors,
)

ROOT = Path(__file__).resolve().parent.parent
BICEP = ROOT / "infra" / "bicep"
MAIN = BICEP / "main.bicep"
PARAMS = BICEP / "main.bicepparam"
AZD_ENV = {"AZURE_ENV_NAME": "mailferry-test", "AZURE_LOCATION": "westeurope"}
KEY_VAULT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
_POWERSHELL = Parser(Language(tree_sitter_powershell.language()))


def azd(environment: dict[str, str] | None = None, **overrides: Any) -> Deployment:
    """The deployment `azd provision` would make with this azd environment."""
    return deploy_with_bicepparam(PARAMS, AZD_ENV | (environment or {}), **overrides)


def app_settings(deployment: Deployment) -> dict[str, Any]:
    """The Function App's app settings."""
    settings = deployment.one("Microsoft.Web/sites/config").body["properties"]
    assert isinstance(settings, dict)
    return settings


def vault(deployment: Deployment) -> dict[str, Any]:
    """The Key Vault resource: name and properties."""
    resource = deployment.one("Microsoft.KeyVault/vaults")
    return {"name": resource.name, **resource.body["properties"]}


# --- Every file parses ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(BICEP.rglob("*.bicep")), ids=lambda p: p.name)
def test_bicep_files_have_no_syntax_errors(path: Path) -> None:
    assert syntax_errors(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", sorted((ROOT / "infra").rglob("*.ps1")), ids=lambda p: p.name)
def test_powershell_files_have_no_syntax_errors(path: Path) -> None:
    assert not _POWERSHELL.parse(path.read_bytes()).root_node.has_error


def test_a_syntax_error_is_caught() -> None:
    assert syntax_errors(MAIN.read_text(encoding="utf-8").replace("param location string", "param location", 1))
    broken = (ROOT / "infra" / "hooks" / "new-key-vault-seed.ps1").read_bytes() + b"\nif ($x {\n"
    assert _POWERSHELL.parse(broken).root_node.has_error


def test_the_default_deployment_evaluates_with_every_parameter_valid() -> None:
    deployment = azd()
    assert deployment.params["environmentName"] == "mailferry-test"
    assert {r.module for r in deployment.resources} >= {"main", "functionApp", "mailStorage", "keyVault"}


# --- Redeploy after `azd down`: a Key Vault name per deployment ----------------------------------


def test_the_vault_name_stays_the_same_for_one_deployment_and_earlier_versions() -> None:
    first, second = azd(), azd()
    assert vault(first)["name"] == vault(second)["name"]
    # Without a seed, the name earlier versions of the template gave: kv-mf-<resource token>.
    token = first.one("Microsoft.ManagedIdentity/userAssignedIdentities").name.removeprefix("id-mailferry-")
    assert vault(first)["name"] == f"kv-mf-{token}"


def test_a_new_seed_gives_a_new_valid_vault_name() -> None:
    names = {vault(azd({"MAILFERRY_KEY_VAULT_SEED": seed}))["name"] for seed in ("", "20261201120000", "x")}
    assert len(names) == 3
    assert all(KEY_VAULT_NAME.match(name) for name in names), names


def test_azd_down_sets_a_new_seed_for_the_next_azd_up(tmp_path: Path) -> None:
    hooks = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))["hooks"]["postdown"]
    assert (ROOT / hooks["windows"]["run"]).is_file()
    script = ROOT / hooks["posix"]["run"]
    calls = tmp_path / "azd-calls"
    stub = tmp_path / "bin" / "azd"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{calls}"\n', encoding="utf-8")
    stub.chmod(0o755)
    before = datetime.now(UTC).replace(microsecond=0)
    result = subprocess.run([hooks["posix"]["shell"], str(script)], capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{stub.parent}:/usr/bin:/bin"}, check=False)
    assert result.returncode == 0, result.stderr
    [call] = calls.read_text(encoding="utf-8").splitlines()
    command, seed = call.rsplit(" ", 1)
    assert command == "env set MAILFERRY_KEY_VAULT_SEED"
    assert datetime.strptime(seed, "%Y%m%d%H%M%S").replace(tzinfo=UTC) >= before
    assert vault(azd({"MAILFERRY_KEY_VAULT_SEED": seed}))["name"] != vault(azd())["name"]


def test_purge_protection_is_opt_in_and_never_sent_as_false() -> None:
    # Off by default, so `azd down --purge` can purge the vault; Azure rejects false on a vault
    # that has it, so "off" is sent as null and leaves such a vault as it is.
    assert vault(azd())["enablePurgeProtection"] is None
    assert vault(azd({"MAILFERRY_KEY_VAULT_PURGE_PROTECTION": "true"}))["enablePurgeProtection"] is True
    assert vault(azd())["enableSoftDelete"] is True
    with pytest.raises(InvalidParameter):
        azd({"MAILFERRY_KEY_VAULT_PURGE_PROTECTION": "yes"})


# --- The azd-service-name tag ----------------------------------------------------------------------


def test_only_the_site_carries_the_azd_service_name_tag() -> None:
    service = next(iter(yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))["services"]))
    tagged = [r for r in azd().resources if "azd-service-name" in (r.body.get("tags") or {})]
    assert [(r.type, r.body["tags"]["azd-service-name"]) for r in tagged] == [("Microsoft.Web/sites", service)]
    plan = azd().one("Microsoft.Web/serverfarms")
    assert plan.body["tags"]["azd-env-name"] == "mailferry-test"


# --- The deployer's role assignment in bicepparam mode ----------------------------------------------


def deployer_assignment(deployment: Deployment, principal: str) -> dict[str, Any]:
    """Properties of the role assignment made to the deployer."""
    [assignment] = [
        r.body["properties"] for r in deployment.of_type("Microsoft.Authorization/roleAssignments")
        if r.body["properties"]["principalId"] == principal
    ]
    assert isinstance(assignment, dict)
    return assignment


@pytest.mark.parametrize("kind", ["User", "Group", "ServicePrincipal"])
def test_the_deployer_role_assignment_takes_azure_principal_type(kind: str) -> None:
    deployment = azd({"AZURE_PRINCIPAL_ID": "pipeline-object-id", "AZURE_PRINCIPAL_TYPE": kind})
    assert deployer_assignment(deployment, "pipeline-object-id")["principalType"] == kind


def test_without_a_principal_type_azure_works_it_out() -> None:
    # azd passes AZURE_PRINCIPAL_ID but not its type in bicepparam mode: a pipeline's service
    # principal must not be typed User, so the type is left out (null) for Azure to resolve.
    deployment = azd({"AZURE_PRINCIPAL_ID": "pipeline-object-id"})
    assert deployer_assignment(deployment, "pipeline-object-id")["principalType"] is None


def test_an_unknown_principal_type_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="principalType"):
        azd({"AZURE_PRINCIPAL_ID": "x", "AZURE_PRINCIPAL_TYPE": "Robot"})


# --- Python versions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13", "3.14"])
def test_the_function_app_runs_the_python_chosen(version: str) -> None:
    site = azd({"MAILFERRY_PYTHON_VERSION": version}).one("Microsoft.Web/sites")
    assert site.body["properties"]["functionAppConfig"]["runtime"] == {"name": "python", "version": version}


@pytest.mark.parametrize("version", ["3.10", "3.9", "3.15"])
def test_pythons_flex_does_not_offer_or_the_app_cannot_run_are_refused(version: str) -> None:
    with pytest.raises(InvalidParameter, match="pythonVersion"):
        azd({"MAILFERRY_PYTHON_VERSION": version})


def test_the_default_python_is_3_11() -> None:
    assert azd().one("Microsoft.Web/sites").body["properties"]["functionAppConfig"]["runtime"]["version"] == "3.11"


# --- Host storage through service URIs, in every cloud -------------------------------------------------


@pytest.mark.parametrize("cloud", [PUBLIC_CLOUD, US_GOVERNMENT_CLOUD], ids=lambda c: c["name"])
def test_host_storage_is_reached_by_service_uris_of_the_cloud(cloud: dict[str, Any]) -> None:
    deployment = deploy(MAIN, {"environmentName": "dev"}, cloud=cloud)
    settings = app_settings(deployment)
    host = deployment.outputs["HOST_STORAGE_ACCOUNT_NAME"]
    suffix = cloud["suffixes"]["storage"]
    assert {k: v for k, v in settings.items() if k.startswith("AzureWebJobsStorage")} == {
        "AzureWebJobsStorage__blobServiceUri": f"https://{host}.blob.{suffix}",
        "AzureWebJobsStorage__queueServiceUri": f"https://{host}.queue.{suffix}",
        "AzureWebJobsStorage__tableServiceUri": f"https://{host}.table.{suffix}",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "<identity.properties.clientId>",
    }
    deployment_storage = deployment.one("Microsoft.Web/sites").body["properties"]["functionAppConfig"]
    assert deployment_storage["deployment"]["storage"]["value"] == f"https://{host}.blob.{suffix}/app-package"


# --- Maximum instance count -----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 40, 1000])
def test_the_instance_count_can_be_capped_from_1_to_1000(count: int) -> None:
    site = azd({"MAILFERRY_MAXIMUM_INSTANCE_COUNT": str(count)}).one("Microsoft.Web/sites")
    assert site.body["properties"]["functionAppConfig"]["scaleAndConcurrency"]["maximumInstanceCount"] == count


@pytest.mark.parametrize("count", [0, -1, 1001])
def test_an_instance_count_flex_refuses_is_refused(count: int) -> None:
    with pytest.raises(InvalidParameter, match="maximumInstanceCount"):
        azd({"MAILFERRY_MAXIMUM_INSTANCE_COUNT": str(count)})
