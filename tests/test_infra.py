"""The deployment agrees with the code: settings, role assignments, hardening, tenant scripts.

No Bicep compiler or PowerShell runs here, so Bicep is read as text: comments are dropped,
then ``var appSettings``, the ``roleAssignments`` resources and the ``existing`` resources they
are scoped to are parsed by brace matching. Each check is a function returning what is wrong,
so the tests can also show that a removed setting or role assignment is caught. The retention
checks at the end evaluate the deployment instead (tests/bicep_evaluator.py).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.clouds import CLOUDS
from shared.naming import blob_name, lease_blob_name, lease_container_name
from shared.poll import FAILURE_LOG_TEXT
from shared.settings import SETTING_NAMES, SETTINGS, Settings
from tests.bicep_evaluator import BicepFile, Deployment, InvalidParameter, deploy, deploy_with_bicepparam

ROOT = Path(__file__).resolve().parent.parent
BICEP = ROOT / "infra" / "bicep"
MAIN = BICEP / "main.bicep"
ROLES = BICEP / "modules" / "role-assignments.bicep"
TENANT_PS = ROOT / "infra" / "tenant" / "Setup-MailferryTenant.ps1"
TENANT_SH = ROOT / "infra" / "tenant" / "setup-entra.sh"
LOCAL_EXAMPLE = ROOT / "local.settings.json.example"

# Settings of the Functions host and platform, not the app's own: allowed in Bicep and in
# local.settings.json.example although SETTINGS does not list them.
PLATFORM_SETTINGS = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "AzureWebJobsStorage",
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__tableServiceUri",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsFeatureFlags",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    }
)
# Read by the app on a developer machine only; a connection string or a local CA never ships.
LOCAL_ONLY = frozenset({"MAIL_STORAGE", "CA_BUNDLE"})
# Identity-based settings that are empty locally, where MAIL_STORAGE (a connection string) wins.
BLANK_LOCALLY = frozenset({s.name for s in SETTINGS if s.name.startswith("MAIL_STORAGE__")} | {"CA_BUNDLE"})
# Flex Consumption rejects these app settings: it takes the runtime from functionAppConfig.
FLEX_REJECTED = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_NODE_DEFAULT_VERSION",
    }
)
# Azure built-in role definition IDs, recorded here a second time to catch a typo in Bicep.
BUILTIN_ROLES = {
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
    "keyVaultSecretsOfficer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageBlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageQueueDataMessageSender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
_STORAGE = "Microsoft.Storage/storageAccounts"
_HOST = "hostStorageName"
_MAIL = "mailStorageName/'default'"
# Every resource the app or its host talks to, by type and name path in the roles module
# (parent names first), the role its identity needs there, and the setting that leads there.
REQUIRED_GRANTS = (
    ("Microsoft.KeyVault/vaults", "keyVaultName", "keyVaultSecretsUser", "KEY_VAULT_URL"),
    (_STORAGE, _HOST, "storageBlobDataOwner", "AzureWebJobsStorage__blobServiceUri"),
    (_STORAGE, _HOST, "storageQueueDataContributor", "AzureWebJobsStorage__queueServiceUri"),
    (_STORAGE, _HOST, "storageTableDataContributor", "AzureWebJobsStorage__tableServiceUri"),
    (
        f"{_STORAGE}/blobServices/containers",
        f"{_MAIL}/mailContainerName",
        "storageBlobDataContributor",
        "BLOB_CONTAINER",
    ),
    (
        f"{_STORAGE}/blobServices/containers",
        f"{_MAIL}/'${{mailContainerName}}-leases'",
        "storageBlobDataContributor",
        "POLL_MODE",
    ),
    # The table service, not the table: the app creates CHECKPOINT_TABLE when it is missing.
    (f"{_STORAGE}/tableServices", _MAIL, "storageTableDataContributor", "CHECKPOINT_TABLE"),
    (
        f"{_STORAGE}/queueServices/queues",
        f"{_MAIL}/fanoutQueueName",
        "storageQueueDataContributor",
        "MAIL_STORAGE__queueServiceUri",
    ),
    (
        f"{_STORAGE}/queueServices/queues",
        f"{_MAIL}/'${{fanoutQueueName}}-poison'",
        "storageQueueDataContributor",
        "MAIL_STORAGE__queueServiceUri",
    ),
    # Send only: the app never reads its own notices.
    (
        f"{_STORAGE}/queueServices/queues",
        f"{_MAIL}/messageQueueName",
        "storageQueueDataMessageSender",
        "NOTIFY_QUEUE",
    ),
    (
        "Microsoft.Insights/components",
        "appInsightsName",
        "monitoringMetricsPublisher",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    ),
)
APP_PRINCIPAL = "principalId"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


# --- Reading Bicep as text -----------------------------------------------------------------


def _string_end(text: str, i: int) -> int:
    """Index just past the string starting at ``i``, or ``i`` when none starts there."""
    if text.startswith("'''", i):
        end = text.find("'''", i + 3)
        return len(text) if end < 0 else end + 3
    if text[i] != "'":
        return i
    j = i + 1
    while j < len(text) and text[j] != "'":
        j += 2 if text[j] == "\\" else 1
    return j + 1


def strip_comments(text: str) -> str:
    """Bicep source without ``//`` and ``/* */`` comments (strings kept intact)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        end = _string_end(text, i)
        if end != i:
            out.append(text[i:end])
            i = end
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = len(text) if close < 0 else close + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def body(text: str, open_at: int) -> str:
    """What lies between the bracket at ``open_at`` and its match."""
    depth, i = 0, open_at
    while i < len(text):
        end = _string_end(text, i)
        if end != i:
            i = end
            continue
        if text[i] in "{[(":
            depth += 1
        elif text[i] in "}])":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
        i += 1
    raise ValueError(f"unbalanced bracket at {open_at}")


def entries(block: str) -> dict[str, str]:
    """Top-level ``key: value`` pairs of an object body (values may span lines)."""
    statements: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(block):
        end = _string_end(block, i)
        if end != i:
            i = end
            continue
        if block[i] in "{[(":
            depth += 1
        elif block[i] in "}])":
            depth -= 1
        elif block[i] == "\n" and depth == 0:
            statements.append(block[start:i])
            start = i + 1
        i += 1
    statements.append(block[start:])
    result: dict[str, str] = {}
    for statement in statements:
        match = re.match(r"\s*('[^']+'|[\w.-]+)\s*:\s*(.*\S)", statement, re.S)
        if match:
            result[match.group(1).strip("'")] = match.group(2)
    return result


def declaration(text: str, pattern: str) -> dict[str, str]:
    """Entries of the object declared by the first line matching ``pattern`` (ending in ``{``)."""
    match = re.search(pattern, text, re.M)
    if match is None:
        raise AssertionError(f"no declaration matches {pattern!r}")
    return entries(body(text, match.end() - 1))


def read_bicep(path: Path) -> str:
    """A Bicep file's text without comments."""
    return strip_comments(path.read_text(encoding="utf-8"))


def app_settings(main_text: str) -> dict[str, str]:
    """The app settings object of main.bicep, name to Bicep expression."""
    return declaration(main_text, r"^var appSettings = \{")


@dataclass(frozen=True)
class RoleAssignment:
    """One roleAssignments resource as written in Bicep."""

    symbol: str
    conditional: bool
    name: str
    scope: str
    role: str
    principal: str


def role_assignments(text: str) -> list[RoleAssignment]:
    """Every roleAssignments resource in a Bicep file."""
    found: list[RoleAssignment] = []
    pattern = r"^resource (\w+) 'Microsoft\.Authorization/roleAssignments@[\w-]+' = (if \(.*\) )?\{"
    for match in re.finditer(pattern, text, re.M):
        outer = entries(body(text, match.end() - 1))
        inner = entries(outer["properties"].strip()[1:-1])
        role = re.fullmatch(
            r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', roles\.(\w+)\)",
            inner["roleDefinitionId"],
        )
        found.append(
            RoleAssignment(
                symbol=match.group(1),
                conditional=match.group(2) is not None,
                name=outer["name"],
                scope=outer.get("scope", ""),
                role=role.group(1) if role else inner["roleDefinitionId"],
                principal=inner["principalId"],
            )
        )
    return found


def existing_resources(text: str) -> dict[str, tuple[str, str]]:
    """Symbol of each ``existing`` resource to its (type, name path): parents' names first."""
    pattern = r"^resource (\w+) '([\w./]+)@[\w-]+' existing = \{"
    declared = {
        m.group(1): (m.group(2), entries(body(text, m.end() - 1))) for m in re.finditer(pattern, text, re.M)
    }

    def path(symbol: str) -> str:
        fields = declared[symbol][1]
        parent = fields.get("parent")
        return f"{path(parent)}/{fields['name']}" if parent else fields["name"]

    return {symbol: (kind, path(symbol)) for symbol, (kind, _) in declared.items()}


# --- Checks: each returns what is wrong --------------------------------------------------------


def settings_missing_from_bicep(main_text: str) -> set[str]:
    """Settings the app reads on Azure that main.bicep does not set."""
    return set(SETTING_NAMES - LOCAL_ONLY) - set(app_settings(main_text))


def settings_unknown_to_app(main_text: str) -> set[str]:
    """App settings in main.bicep that are neither the app's nor the platform's."""
    return set(app_settings(main_text)) - SETTING_NAMES - PLATFORM_SETTINGS


def missing_grants(roles_text: str) -> list[str]:
    """Resources the app uses on which its identity has no role assignment named as required."""
    resources = existing_resources(roles_text)
    assignments = role_assignments(roles_text)
    problems: list[str] = []
    for kind, name, role, setting in REQUIRED_GRANTS:
        scopes = [s for s, (k, n) in resources.items() if k == kind and n == name]
        if not any(
            a.scope in scopes and a.role == role and a.principal == APP_PRINCIPAL and not a.conditional
            for a in assignments
        ):
            problems.append(f"{role} on {kind} {name} (used through {setting})")
    return problems


# --- Settings ----------------------------------------------------------------------------------


def test_bicep_sets_every_setting_the_app_reads() -> None:
    assert settings_missing_from_bicep(read_bicep(MAIN)) == set()


def test_bicep_sets_no_setting_unknown_to_the_app() -> None:
    assert settings_unknown_to_app(read_bicep(MAIN)) == set()


def test_local_only_settings_stay_out_of_bicep() -> None:
    assert LOCAL_ONLY & set(app_settings(read_bicep(MAIN))) == set()


def test_bicep_sets_nothing_flex_consumption_rejects() -> None:
    assert FLEX_REJECTED & set(app_settings(read_bicep(MAIN))) == set()


def test_a_removed_or_stray_setting_is_caught() -> None:
    text = read_bicep(MAIN)
    without = re.sub(r"^\s*POLL_SCHEDULE:.*$", "", text, count=1, flags=re.M)
    assert "POLL_SCHEDULE" in settings_missing_from_bicep(without)
    stray = text.replace("var appSettings = {", "var appSettings = {\n  POLL_SCHEDUL: 'x'", 1)
    assert "POLL_SCHEDUL" in settings_unknown_to_app(stray)


def load_local_example() -> dict[str, str]:
    """The Values of local.settings.json.example."""
    document = json.loads(LOCAL_EXAMPLE.read_text(encoding="utf-8"))
    assert document["IsEncrypted"] is False
    values = document["Values"]
    assert isinstance(values, dict)
    return {str(k): str(v) for k, v in values.items()}


def test_local_example_lists_every_setting_and_only_known_ones() -> None:
    names = set(load_local_example())
    assert SETTING_NAMES - names == set()
    assert names - SETTING_NAMES - PLATFORM_SETTINGS == set()


def test_local_example_values_are_the_documented_examples() -> None:
    values = load_local_example()
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    for spec in SETTINGS:
        assert values[spec.name] == ("" if spec.name in BLANK_LOCALLY else spec.example), spec.name


def test_local_example_passes_the_apps_own_validation() -> None:
    settings = Settings.from_mapping(load_local_example())
    assert settings.storage.connection_string is not None


def bicep_param_defaults(text: str) -> dict[str, str]:
    """Literal default of each ``param`` of a Bicep file, quotes removed."""
    found = re.findall(r"^param (\w+) (?:string|int|bool) = ('[^']*'|\d+|true|false)\s*$", text, re.M)
    return {name: value.strip("'") for name, value in found}


def bicep_sources(text: str) -> dict[str, tuple[str | None, str | None]]:
    """Each app setting Bicep sets plainly: (the param it comes from, or None; its literal, or None)."""
    found: dict[str, tuple[str | None, str | None]] = {}
    for name, expression in app_settings(text).items():
        match = re.fullmatch(r"(?:string\()?(\w+)\)?|'([^']*)'", expression)
        if match is not None:
            found[name] = (match.group(1), match.group(2))
    return found


def test_bicep_defaults_are_the_apps_defaults() -> None:
    text = read_bicep(MAIN)
    params = bicep_param_defaults(text)
    sources = bicep_sources(text)
    for spec in SETTINGS:
        if spec.default is None or spec.name not in app_settings(text):
            continue
        # Every setting with a default is a literal or a param with a literal default in Bicep.
        assert spec.name in sources, f"{spec.name}: Bicep sets it to an expression, not its default"
        param, literal = sources[spec.name]
        value = params.get(param) if param else literal
        assert value == spec.default, (spec.name, value, spec.default)


def test_bicep_params_refuse_what_the_app_refuses() -> None:
    """An integer setting's param has the spec's range, a choice setting's the spec's choices."""
    main = BicepFile(MAIN)
    checked = 0
    for spec in SETTINGS:
        param = bicep_sources(read_bicep(MAIN)).get(spec.name, (None, None))[0]
        if param is None or spec.kind not in ("integer", "choice"):
            continue
        decorators = main.params[param].decorators
        if spec.kind == "integer":
            assert "minValue" in decorators and "maxValue" in decorators, (spec.name, param)
            assert (main.decorator_value(param, "minValue"), main.decorator_value(param, "maxValue")) == (
                spec.low, spec.high), spec.name
        else:
            assert "allowed" in decorators, (spec.name, param)
            assert list(main.decorator_value(param, "allowed")) == list(spec.choices), spec.name
        checked += 1
    assert checked == 11  # the six integer knobs; cloud, auth mode, protocol, mailbox source, poll mode


def test_cloud_specific_settings_come_from_m365_cloud() -> None:
    text = read_bicep(MAIN)
    settings = app_settings(text)
    assert settings["M365_CLOUD"] == "m365Cloud"
    assert bicep_param_defaults(text)["m365Cloud"] in CLOUDS
    derived = {"AUTHORITY_HOST", "TOKEN_SCOPE", "IMAP_HOST", "POP3_HOST", "FEDERATED_TOKEN_AUDIENCE"}
    assert {name: settings[name] for name in derived} == dict.fromkeys(derived, "''")


# --- Role assignments ----------------------------------------------------------------------------


def test_every_resource_the_app_uses_is_granted_to_its_identity() -> None:
    assert missing_grants(read_bicep(ROLES)) == []


def test_a_deleted_role_assignment_is_caught() -> None:
    text = read_bicep(ROLES)
    match = re.search(r"^resource mailBlobDataContributor .*\{", text, re.M)
    assert match is not None
    end = match.end() - 1 + len(body(text, match.end() - 1)) + 2
    assert (
        "storageBlobDataContributor on Microsoft.Storage/storageAccounts/blobServices/containers "
        "mailStorageName/'default'/mailContainerName (used through BLOB_CONTAINER)"
    ) in missing_grants(text[: match.start()] + text[end:])


@pytest.mark.parametrize("assignment", role_assignments(read_bicep(ROLES)), ids=lambda a: a.symbol)
def test_role_assignment_is_named_from_scope_principal_and_role(assignment: RoleAssignment) -> None:
    assert assignment.scope in existing_resources(read_bicep(ROLES))
    assert assignment.name == f"guid({assignment.scope}.id, {assignment.principal}, roles.{assignment.role})"


def test_the_app_identity_holds_no_role_beyond_what_it_needs() -> None:
    text = read_bicep(ROLES)
    resources = existing_resources(text)
    held = {(*resources[a.scope], a.role) for a in role_assignments(text) if a.principal == APP_PRINCIPAL}
    assert held == {(kind, name, role) for kind, name, role, _ in REQUIRED_GRANTS}
    # The mail account is never granted as a whole: only its container, table and queues.
    assert not any(name == "mailStorageName" for _, name, _ in held)
    assert not any(
        name.startswith("mailStorageName/'default'") and role.endswith("Owner") for _, name, role in held
    )


def test_role_definition_ids_are_the_builtin_ones() -> None:
    roles = declaration(read_bicep(ROLES), r"^var roles = \{")
    assert {k: v.strip("'") for k, v in roles.items()} == BUILTIN_ROLES


def test_roles_module_gets_the_resources_the_settings_point_at() -> None:
    text = read_bicep(MAIN)
    params = entries(declaration(text, r"^module roleAssignments '[^']+' = \{")["params"].strip()[1:-1])
    settings = app_settings(text)
    assert params["principalId"] == "identity.properties.principalId"
    assert params["keyVaultName"] == "keyVault.outputs.name"
    assert settings["KEY_VAULT_URL"] == "keyVault.outputs.uri"
    assert params["hostStorageName"] == "hostStorage.outputs.name"
    assert params["mailStorageName"] == "mailStorage.outputs.name"
    for kind in ("blob", "table", "queue"):
        assert settings[f"AzureWebJobsStorage__{kind}ServiceUri"] == f"hostStorage.outputs.{kind}ServiceUri"
        assert settings[f"MAIL_STORAGE__{kind}ServiceUri"] == f"mailStorage.outputs.{kind}ServiceUri"
    assert params["mailContainerName"] == settings["BLOB_CONTAINER"]
    assert params["fanoutQueueName"] == settings["POLL_QUEUE"]
    assert settings["NOTIFY_QUEUE"] == f"messageNotices ? {params['messageQueueName']} : ''"
    for name in ("MANAGED_IDENTITY_CLIENT_ID", "MAIL_STORAGE__clientId", "AzureWebJobsStorage__clientId"):
        assert settings[name] == "identity.properties.clientId", name
    assert (
        settings["MAIL_STORAGE__credential"]
        == settings["AzureWebJobsStorage__credential"]
        == "'managedidentity'"
    )


def test_mail_storage_creates_what_the_roles_are_scoped_to() -> None:
    params = entries(
        declaration(read_bicep(MAIN), r"^module mailStorage '[^']+' = \{")["params"].strip()[1:-1]
    )
    assert params["containers"] == "[mailContainerName, '${mailContainerName}-leases']"
    assert params["tables"] == "[checkpointTableName]"
    assert params["queues"] == "[fanoutQueueName, '${fanoutQueueName}-poison', messageQueueName]"


# --- Hardening the issue asks for ------------------------------------------------------------------


def all_bicep() -> str:
    """Every Bicep and parameter file, comments dropped."""
    files = sorted(BICEP.rglob("*.bicep")) + sorted(BICEP.rglob("*.bicepparam"))
    return "\n".join(read_bicep(path) for path in files)


def test_no_keys_or_secrets_anywhere_in_bicep() -> None:
    text = all_bicep()
    for forbidden in (
        "listKeys(",
        "AccountKey",
        "DefaultEndpointsProtocol",
        "SharedAccessSignature",
        "@secure()",
    ):
        assert forbidden not in text, forbidden
    secret_params = set(re.findall(r"^param (\w*[Ss]ecret\w*)", text, re.M))
    assert secret_params <= {"clientSecretName"}


@pytest.mark.parametrize(
    ("module", "required"),
    [
        (
            "storage-account.bicep",
            [
                "allowSharedKeyAccess: false",
                "minimumTlsVersion: 'TLS1_2'",
                "supportsHttpsTrafficOnly: true",
                "allowBlobPublicAccess: false",
            ],
        ),
        (
            "key-vault.bicep",
            # Purge protection is a parameter: tests/test_infra_deployment.py checks both values.
            ["enableRbacAuthorization: true", "enableSoftDelete: true"],
        ),
        (
            "function-app.bicep",
            [
                "name: 'FC1'",
                "tier: 'FlexConsumption'",
                "kind: 'functionapp,linux'",
                "type: 'UserAssigned'",
                "type: 'UserAssignedIdentity'",
                "name: 'python'",
                "httpsOnly: true",
            ],
        ),
        (
            "monitoring.bicep",
            [
                "Microsoft.Insights/scheduledQueryRules@",
                "DisableLocalAuth: true",
                "failingPeriods",
                f"param pollFailedText string = '{FAILURE_LOG_TEXT}'",
            ],
        ),
    ],
)
def test_module_has_the_required_hardening(module: str, required: list[str]) -> None:
    text = read_bicep(BICEP / "modules" / module)
    for fragment in required:
        assert fragment in text, fragment


def test_function_app_runs_the_chosen_python_with_identity_based_host_storage() -> None:
    text = read_bicep(MAIN)
    assert bicep_param_defaults(text)["pythonVersion"] == "3.11"
    params = entries(declaration(text, r"^module functionApp '[^']+' = \{")["params"].strip()[1:-1])
    assert params["pythonVersion"] == "pythonVersion"
    settings = app_settings(text)
    assert settings["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert "AzureWebJobsStorage" not in settings


def test_azure_yaml_deploys_the_function_to_the_tagged_app() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    for line in (
        "provider: bicep",
        "path: infra/bicep",
        "module: main",
        "host: function",
        "language: python",
    ):
        assert re.search(rf"^\s*{re.escape(line)}\s*$", text, re.M), line
    service = re.search(r"^services:\n  (\w+):", text, re.M)
    assert service is not None
    # The module puts the tag on the site alone (tests/test_infra_deployment.py evaluates it).
    assert f"azdServiceName: '{service.group(1)}'" in read_bicep(MAIN)


# --- README sections and tenant scripts ----------------------------------------------------------------


def test_readme_sections_document_deploy_tenant_settings_and_outputs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for heading in ("## Deploy in one step", "## Set up the tenant"):
        assert re.search(rf"^{heading}\s*$", readme, re.M), heading
    text = readme + "".join((ROOT / "docs" / page).read_text(encoding="utf-8")
                            for page in ("azure.md", "tenant.md"))
    for command in (
        "azd up",
        "func azure functionapp publish",
        "Setup-MailferryTenant.ps1",
        "setup-entra.sh",
    ):
        assert command in text, command
    assert f"`{FAILURE_LOG_TEXT}" in text
    undocumented = {name for name in SETTING_NAMES if f"`{name}`" not in text}
    assert undocumented == set()
    # Every `azd env get-value X` names a Bicep output or a variable main.bicepparam reads.
    known = set(re.findall(r"^output (\w+) ", read_bicep(MAIN), re.M))
    known |= set(re.findall(r"readEnvironmentVariable\('(\w+)'", read_bicep(BICEP / "main.bicepparam")))
    used = set(re.findall(r"azd env get-value (\w+)", text))
    assert used and used <= known


def test_tenant_scripts_use_current_modules_and_look_role_ids_up() -> None:
    ps = TENANT_PS.read_text(encoding="utf-8")
    sh = TENANT_SH.read_text(encoding="utf-8")
    retired = re.compile(r"\b(?:Connect-AzureAD|\w+-AzureAD\w*|Connect-MsolService|\w+-Msol\w+)\b")
    assert retired.findall(ps) == []
    for cmdlet in (
        "SupportsShouldProcess",
        "Connect-MgGraph",
        "Connect-ExchangeOnline",
        "New-MgServicePrincipalAppRoleAssignment",
        "New-ServicePrincipal",
        "Add-MailboxPermission",
        "Set-CASMailbox",
        "Test-ServicePrincipalAuthorization",
        "Set-AzKeyVaultSecret",
    ):
        assert cmdlet in ps, cmdlet
    for script in (ps, sh):
        # The only GUID is the Exchange Online API; role IDs come from its AppRoles by value.
        assert set(_GUID.findall(script)) == {EXCHANGE_APP_ID}
        assert "IMAP.AccessAsApp" in script
    assert "--dry-run" in sh


def test_tenant_scripts_touch_the_secret_only_to_store_it() -> None:
    ps_lines = [ln for ln in TENANT_PS.read_text(encoding="utf-8").splitlines() if "SecretText" in ln]
    assert ps_lines
    assert all("ConvertTo-SecureString" in ln for ln in ps_lines), ps_lines
    sh_lines = [
        ln.strip()
        for ln in TENANT_SH.read_text(encoding="utf-8").splitlines()
        if re.search(r"\bsecret_value\b", ln)
    ]
    assert sh_lines
    allowed = re.compile(
        r"(secret_value=\"\$\(|printf '%s' \"\$secret_value\" > |unset secret_value|local secret_value)"
    )
    assert all(allowed.search(ln) for ln in sh_lines), sh_lines


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_cli_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(TENANT_SH)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_failure_lines_are_never_sampled_away() -> None:
    """The alert counts `mailbox poll failed` traces: sampling must not drop them."""
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert "Trace" in sampling["excludedTypes"].split(";")


# --- Retention of the mail: lifecycle tiers and deletion, immutability --------------------------------
# Evaluated deployments (tests/bicep_evaluator.py): what Azure would be sent for each choice.

_POLICY = "Microsoft.Storage/storageAccounts/managementPolicies"
_IMMUTABILITY = "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies"
_CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
_BLOB_SERVICE = "Microsoft.Storage/storageAccounts/blobServices"


def retention_deployment(**params: object) -> Deployment:
    """main.bicep deployed with these retention parameters."""
    return deploy(MAIN, {"environmentName": "dev", **params})


def mail_account(deployment: Deployment) -> str:
    """Name of the mail storage account."""
    return str(deployment.outputs["MAIL_STORAGE_ACCOUNT_NAME"])


def container_properties(deployment: Deployment, container: str) -> dict[str, object]:
    """Properties of a container of the mail account."""
    [found] = [r for r in deployment.of_type(_CONTAINER) if r.name == f"{mail_account(deployment)}/default/{container}"]
    properties = found.body["properties"]
    assert isinstance(properties, dict)
    return properties


def test_retention_is_off_by_default() -> None:
    deployment = retention_deployment()
    assert deployment.of_type(_POLICY) == [] and deployment.of_type(_IMMUTABILITY) == []
    assert all(r.body["properties"]["isVersioningEnabled"] is False for r in deployment.of_type(_BLOB_SERVICE))
    assert container_properties(deployment, "mail")["immutableStorageWithVersioning"] is None


@pytest.mark.parametrize(
    ("params", "actions"),
    [
        ({"mailCoolAfterDays": 30}, {"tierToCool": 30}),
        ({"mailColdAfterDays": 90}, {"tierToCold": 90}),
        ({"mailColdTier": "Archive", "mailColdAfterDays": 180}, {"tierToArchive": 180}),
        ({"mailDeleteAfterDays": 3650}, {"delete": 3650}),
        (
            {"mailCoolAfterDays": 30, "mailColdTier": "Archive", "mailColdAfterDays": 365, "mailDeleteAfterDays": 2555},
            {"tierToCool": 30, "tierToArchive": 365, "delete": 2555},
        ),
        ({"mailCoolAfterDays": 30, "mailColdAfterDays": -1, "mailDeleteAfterDays": 0}, {"tierToCool": 30}),
    ],
)
def test_lifecycle_policy_tiers_and_deletes_the_mail_as_asked(params: dict[str, object], actions: dict[str, int]) -> None:
    deployment = retention_deployment(**params)
    [policy] = deployment.of_type(_POLICY)
    assert policy.name == f"{mail_account(deployment)}/default"
    [rule] = policy.body["properties"]["policy"]["rules"]
    assert rule["enabled"] is True and rule["type"] == "Lifecycle"
    base = rule["definition"]["actions"]["baseBlob"]
    assert {action: days["daysAfterModificationGreaterThan"] for action, days in base.items()} == actions
    version = rule["definition"]["actions"].get("version")
    if "delete" in actions:
        assert version == {"delete": {"daysAfterCreationGreaterThan": actions["delete"]}}
    else:
        assert version is None


@pytest.mark.parametrize("off", [0, -1])
def test_zero_or_minus_one_turn_every_lifecycle_action_off(off: int) -> None:
    deployment = retention_deployment(mailCoolAfterDays=off, mailColdAfterDays=off, mailDeleteAfterDays=off)
    assert deployment.of_type(_POLICY) == []


def test_lifecycle_reaches_the_mail_blobs_and_never_the_lease_blobs() -> None:
    deployment = retention_deployment(mailDeleteAfterDays=30)
    [rule] = deployment.one(_POLICY).body["properties"]["policy"]["rules"]
    prefixes = rule["definition"]["filters"]["prefixMatch"]
    assert rule["definition"]["filters"]["blobTypes"] == ["blockBlob"]
    container = str(deployment.outputs["MAIL_BLOB_CONTAINER"])
    mail_blob = f"{container}/{blob_name('ops@contoso.com', 'INBOX', 7, 42)}"
    lease_blob = f"{lease_container_name(container)}/{lease_blob_name('ops@contoso.com')}"
    assert any(mail_blob.startswith(p) for p in prefixes)
    assert not any(lease_blob.startswith(p) for p in prefixes)


def test_immutable_storage_covers_the_mail_container_alone() -> None:
    default, immutable = retention_deployment(), retention_deployment(mailImmutableStorage=True)
    assert container_properties(immutable, "mail")["immutableStorageWithVersioning"] == {"enabled": True}
    # Leases are taken, renewed and released all day: their container stays mutable.
    leases = lease_container_name("mail")
    assert container_properties(immutable, leases)["immutableStorageWithVersioning"] is None
    versioning = {r.name.split("/")[0]: r.body["properties"]["isVersioningEnabled"] for r in immutable.of_type(_BLOB_SERVICE)}
    assert versioning == {mail_account(immutable): True, str(immutable.outputs["HOST_STORAGE_ACCOUNT_NAME"]): False}
    # The checkpoint table, the queues and the role assignments are exactly as without immutability.
    for kind in ("Microsoft.Storage/storageAccounts/tableServices", "Microsoft.Storage/storageAccounts/tableServices/tables",
                 "Microsoft.Storage/storageAccounts/queueServices/queues", "Microsoft.Authorization/roleAssignments"):
        assert [(r.name, r.body) for r in immutable.of_type(kind)] == [(r.name, r.body) for r in default.of_type(kind)], kind
    assert immutable.of_type(_IMMUTABILITY) == []  # legal holds possible, no time-based retention


def test_a_retention_period_makes_every_new_message_immutable_for_it() -> None:
    deployment = retention_deployment(mailRetentionDays=2555)
    [policy] = deployment.of_type(_IMMUTABILITY)
    assert policy.name == f"{mail_account(deployment)}/default/mail/default"
    assert policy.body["properties"] == {"immutabilityPeriodSinceCreationInDays": 2555, "allowProtectedAppendWrites": False}
    assert container_properties(deployment, "mail")["immutableStorageWithVersioning"] == {"enabled": True}


def test_a_locked_policy_is_left_alone_and_the_container_stays_immutable() -> None:
    deployment = retention_deployment(mailRetentionDays=2555, mailRetentionLocked=True)
    assert deployment.of_type(_IMMUTABILITY) == []
    assert container_properties(deployment, "mail")["immutableStorageWithVersioning"] == {"enabled": True}


@pytest.mark.parametrize(
    "params",
    [{"mailCoolAfterDays": -2}, {"mailDeleteAfterDays": -5}, {"mailRetentionDays": -1},
     {"mailRetentionDays": 146001}, {"mailColdTier": "Hot"}],
)
def test_retention_values_azure_refuses_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(InvalidParameter):
        retention_deployment(**params)


def test_azd_environment_sets_each_retention_option() -> None:
    environment = {
        "AZURE_ENV_NAME": "dev", "MAILFERRY_MAIL_COOL_AFTER_DAYS": "30", "MAILFERRY_MAIL_COLD_TIER": "Archive",
        "MAILFERRY_MAIL_COLD_AFTER_DAYS": "365", "MAILFERRY_MAIL_DELETE_AFTER_DAYS": "3650",
        "MAILFERRY_MAIL_IMMUTABLE_STORAGE": "true", "MAILFERRY_MAIL_RETENTION_DAYS": "2555",
        "MAILFERRY_MAIL_RETENTION_LOCKED": "false",
    }
    params = deploy_with_bicepparam(BICEP / "main.bicepparam", environment).params
    assert {k: params[k] for k in params if k.startswith("mail") and not k.startswith("mailboxes")} == {
        "mailContainerName": "mail", "mailCoolAfterDays": 30, "mailColdTier": "Archive", "mailColdAfterDays": 365,
        "mailDeleteAfterDays": 3650, "mailImmutableStorage": True, "mailRetentionDays": 2555,
        "mailRetentionLocked": False, "mailProtocol": "imap",
    }


# Blob operations an immutable blob version refuses; the app must never need one on the mail.
_MUTATING_BLOB_CALLS = frozenset(
    {"delete_blob", "delete_blobs", "set_blob_metadata", "set_http_headers", "set_blob_tags",
     "set_standard_blob_tier", "start_copy_from_url", "undelete_blob", "delete_container"}
)


def test_the_app_only_creates_blobs_so_immutability_never_blocks_it() -> None:
    calls: list[str] = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                overwrite = any(k.arg == "overwrite" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                                for k in node.keywords)
                if name in _MUTATING_BLOB_CALLS or (name == "upload_blob" and overwrite):
                    calls.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert calls == []
    # Both ways of writing a message are create-only, which immutability allows.
    blob = (ROOT / "shared" / "adapters" / "blob.py").read_text(encoding="utf-8")
    assert '"If-None-Match": "*"' in blob and "match_condition=MatchConditions.IfMissing" in blob
