#!/usr/bin/env bash
# Entra ID part of the mailferry tenant setup with the Azure CLI, for teams without PowerShell.
#
# Does steps 1-5 of Setup-MailferryTenant.ps1, idempotently: finds or creates the app
# registration, requests IMAP.AccessAsApp (and POP.AccessAsApp) of Office 365 Exchange Online
# (role IDs looked up by value), creates the Enterprise Application, grants admin consent, and
# writes a client secret's Value into Key Vault without printing it (--auth-mode secret) or
# trusts the Function App's managed identity with a federated credential (--auth-mode federated).
#
# The Exchange Online part (New-ServicePrincipal, Add-MailboxPermission, Set-CASMailbox) has no
# Azure CLI or Graph equivalent: it is PowerShell-only. This script prints the exact command.
#
# Needs: az (logged in with `az login --tenant <tenant>` to the tenant that owns the mailboxes
# AND the Key Vault's subscription), Global Administrator or Privileged Role Administrator +
# Application Administrator, and Key Vault Secrets Officer on the vault.
#
# MAILFERRY_GRAPH_URL replaces the Microsoft Graph endpoint (default: the az cloud's, /v1.0).
# A command that fails stops the script: nothing is reported as done that was not.
set -euo pipefail

readonly EXCHANGE_API_APP_ID="00000002-0000-0ff1-ce00-000000000000"

usage() {
  cat <<'EOF'
Usage: setup-entra.sh --tenant <id|domain> --key-vault <name> [options]
       setup-entra.sh --tenant <id|domain> --auth-mode federated --identity-principal-id <id> [options]

  --tenant ID            tenant that owns the mailboxes (must be the az login tenant)
  --auth-mode MODE       secret (default) or federated: the AUTH_MODE of the Function App
  --key-vault NAME       vault receiving the client secret (azd env get-value AZURE_KEY_VAULT_NAME)
  --identity-principal-id ID   federated: azd env get-value MANAGED_IDENTITY_PRINCIPAL_ID
  --identity-tenant ID   federated: tenant of that identity (azd env get-value AZURE_TENANT_ID);
                         default: --tenant
  --cloud NAME           M365_CLOUD: global (default), usgov, usgovdod or china
  --app-id ID            existing app registration; default: find by --display-name or create
  --display-name NAME    default: mailferry
  --protocols LIST       IMAP, POP or IMAP,POP; default: IMAP
  --secret-name NAME     default: mailferry-client-secret
  --years N              client secret lifetime in years; default: 1
  --rotate-secret        create a new secret even if the vault holds one for this app
  --mailboxes LIST       only used to print the Exchange Online command, MAILBOXES format
  --dry-run              print what would change; change nothing
  -h, --help             this text
EOF
}

tenant="" key_vault="" app_id="" display_name="mailferry" protocols="IMAP"
secret_name="mailferry-client-secret" years=1 rotate=false mailboxes="" dry_run=false
auth_mode="secret" identity_principal_id="" identity_tenant="" cloud="global"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tenant) tenant="$2"; shift 2 ;;
    --key-vault) key_vault="$2"; shift 2 ;;
    --app-id) app_id="$2"; shift 2 ;;
    --display-name) display_name="$2"; shift 2 ;;
    --protocols) protocols="$2"; shift 2 ;;
    --secret-name) secret_name="$2"; shift 2 ;;
    --years) years="$2"; shift 2 ;;
    --rotate-secret) rotate=true; shift ;;
    --mailboxes) mailboxes="$2"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    --auth-mode) auth_mode="$2"; shift 2 ;;
    --identity-principal-id) identity_principal_id="$2"; shift 2 ;;
    --identity-tenant) identity_tenant="$2"; shift 2 ;;
    --cloud) cloud="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ -n "$tenant" ]] || { usage >&2; exit 2; }
case "$auth_mode" in
  secret) [[ -n "$key_vault" ]] || { echo "--auth-mode secret needs --key-vault" >&2; exit 2; } ;;
  federated) [[ -n "$identity_principal_id" ]] || { echo "--auth-mode federated needs --identity-principal-id" >&2; exit 2; } ;;
  *) echo "--auth-mode is secret or federated (certificate: see docs/tenant.md)" >&2; exit 2 ;;
esac
# Token issuer of the managed identity and audience of its federated token, per M365_CLOUD
# (the same audiences as shared/clouds.py).
case "$cloud" in
  global) login="https://login.microsoftonline.com"; audience="api://AzureADTokenExchange" ;;
  usgov|usgovdod) login="https://login.microsoftonline.us"; audience="api://AzureADTokenExchangeUSGov" ;;
  china) login="https://login.partner.microsoftonline.cn"; audience="api://AzureADTokenExchangeChina" ;;
  *) echo "--cloud is global, usgov, usgovdod or china" >&2; exit 2 ;;
esac

step() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
# Shows a command that would change something under --dry-run (on stderr, so a caller
# capturing the output still sees it). Changes run outside conditions, so set -e stops the
# script when one fails.
would() { printf '    would run: %s\n' "$*" >&2; }

tmp_dir=""
trap '[[ -z "$tmp_dir" ]] || rm -rf "$tmp_dir"' EXIT

graph="${MAILFERRY_GRAPH_URL:-$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv | sed 's:/*$::')/v1.0}"
current_tenant="$(az account show --query tenantId -o tsv)"
if [[ "$tenant" != "$current_tenant" ]]; then
  domains="$(az rest --method get --url "$graph/organization" --query 'value[0].verifiedDomains[].name' -o tsv)"
  if ! grep -qix -- "$tenant" <<<"$domains"; then
    echo "az is signed in to tenant $current_tenant, not $tenant; run: az login --tenant $tenant" >&2
    exit 1
  fi
fi

step "Office 365 Exchange Online application roles"
# The resource's service principal in this tenant: its object ID is the resourceId of a grant.
exchange_sp_url="$graph/servicePrincipals(appId='$EXCHANGE_API_APP_ID')?\$select=id,appRoles"
exchange_sp_id="$(az rest --method get --url "$exchange_sp_url" --query id -o tsv)"
[[ -n "$exchange_sp_id" ]] || { echo "Office 365 Exchange Online has no service principal in this tenant" >&2; exit 1; }
role_values=()  # e.g. IMAP.AccessAsApp
role_ids=()     # the matching app role IDs, same order (no associative arrays: bash 3 on macOS)
for protocol in $(tr ',' ' ' <<<"$protocols" | tr '[:lower:]' '[:upper:]'); do
  [[ "$protocol" == IMAP || "$protocol" == POP ]] || { echo "unknown protocol: $protocol" >&2; exit 2; }
  value="$protocol.AccessAsApp"
  id="$(az rest --method get --url "$exchange_sp_url" \
    --query "appRoles[?value=='$value' && contains(allowedMemberTypes, 'Application')].id | [0]" -o tsv)"
  [[ -n "$id" ]] || { echo "Exchange Online has no application role $value" >&2; exit 1; }
  role_values+=("$value")
  role_ids+=("$id")
  note "$value = $id"
done

step "App registration"
if [[ -n "$app_id" ]]; then
  [[ -n "$(az ad app show --id "$app_id" --query appId -o tsv 2>/dev/null)" ]] \
    || { echo "no app registration with application ID $app_id" >&2; exit 1; }
  note "found $app_id"
else
  found="$(az ad app list --display-name "$display_name" --query "[?displayName=='$display_name'].appId" -o tsv)"
  count="$(grep -c . <<<"$found" || true)"
  if (( count > 1 )); then
    echo "$count app registrations are named '$display_name': pass --app-id" >&2; exit 1
  elif (( count == 1 )); then
    app_id="$found"; note "found '$display_name', application ID $app_id"
  elif $dry_run; then
    would az ad app create --display-name "$display_name" --sign-in-audience AzureADMyOrg
    app_id="<new app>"
  else
    app_id="$(az ad app create --display-name "$display_name" --sign-in-audience AzureADMyOrg --query appId -o tsv)"
    note "created '$display_name', application ID $app_id"
  fi
fi
if [[ "$app_id" == "<new app>" ]]; then
  note "the remaining steps depend on the new app; rerun without --dry-run"
  exit 0
fi

step "Application permissions"
requested="$(az ad app show --id "$app_id" \
  --query "requiredResourceAccess[?resourceAppId=='$EXCHANGE_API_APP_ID'].resourceAccess[?type=='Role'].id[]" -o tsv)"
for i in "${!role_ids[@]}"; do
  if grep -qx "${role_ids[$i]}" <<<"$requested"; then
    note "${role_values[$i]}: requested"
  elif $dry_run; then
    would az ad app permission add --id "$app_id" --api "$EXCHANGE_API_APP_ID" --api-permissions "${role_ids[$i]}=Role"
  else
    az ad app permission add --id "$app_id" --api "$EXCHANGE_API_APP_ID" \
      --api-permissions "${role_ids[$i]}=Role" --only-show-errors
    note "${role_values[$i]}: requested now"
  fi
done

step "Enterprise Application (service principal)"
sp_id="$(az ad sp list --filter "appId eq '$app_id'" --query '[0].id' -o tsv)"
if [[ -n "$sp_id" ]]; then
  note "found, object ID $sp_id"
elif $dry_run; then
  would az ad sp create --id "$app_id"
  sp_id="<new service principal>"
else
  sp_id="$(az ad sp create --id "$app_id" --query id -o tsv)"
  note "created, object ID $sp_id"
fi

step "Admin consent"
granted=""
[[ "$sp_id" == "<"* ]] || granted="$(az rest --method get --url "$graph/servicePrincipals/$sp_id/appRoleAssignments" \
  --query "value[?resourceId=='$exchange_sp_id'].appRoleId" -o tsv)"
for i in "${!role_ids[@]}"; do
  # Graph grants an application permission on the resource: the URL names Exchange Online's
  # service principal, the body our app's (principalId) and the role.
  consent_url="$graph/servicePrincipals/$exchange_sp_id/appRoleAssignedTo"
  consent_body="{\"principalId\":\"$sp_id\",\"resourceId\":\"$exchange_sp_id\",\"appRoleId\":\"${role_ids[$i]}\"}"
  if grep -qx "${role_ids[$i]}" <<<"$granted"; then
    note "${role_values[$i]}: granted"
  elif $dry_run; then
    would az rest --method post --url "$consent_url" --body "$consent_body"
  else
    az rest --method post --url "$consent_url" --headers 'Content-Type=application/json' --output none \
      --body "$consent_body"
    note "${role_values[$i]}: granted now"
  fi
done

if [[ "$auth_mode" == federated ]]; then
  step "Federated identity credential for the managed identity"
  issuer="$login/${identity_tenant:-$(az account show --query tenantId -o tsv)}/v2.0"
  present="$(az ad app federated-credential list --id "$app_id" \
    --query "[?issuer=='$issuer' && subject=='$identity_principal_id'] | length(@)" -o tsv)"
  credential="{\"name\":\"mailferry-${identity_principal_id:0:8}\",\"issuer\":\"$issuer\",\"subject\":\"$identity_principal_id\",\"audiences\":[\"$audience\"]}"
  if [[ "$present" != 0 ]]; then
    note "present: issuer $issuer, subject $identity_principal_id"
  elif $dry_run; then
    would az ad app federated-credential create --id "$app_id" --parameters "$credential"
  else
    az ad app federated-credential create --id "$app_id" --output none --parameters "$credential"
    note "added: issuer $issuer, subject $identity_principal_id"
  fi
else
  step "Client secret in Key Vault $key_vault as '$secret_name'"
  # Metadata only (list never returns values): the secret's name and the app it was made for.
  stored="$(az keyvault secret list --vault-name "$key_vault" --query "[?name=='$secret_name'].name | [0]" -o tsv)"
  stored_for="$(az keyvault secret list --vault-name "$key_vault" --query "[?name=='$secret_name'].tags.appId | [0]" -o tsv)"
  store_secret() {
    local label
    local secret_value
    label="mailferry $(date -u +%Y-%m-%dT%H%M%SZ)"
    # The Value goes from az's output into a file only this user can read, and from there into
    # Key Vault; it is never echoed nor passed on a command line.
    secret_value="$(az ad app credential reset --id "$app_id" --append --display-name "$label" \
      --years "$years" --query password -o tsv --only-show-errors)"
    tmp_dir="$(mktemp -d)"
    (umask 077 && printf '%s' "$secret_value" > "$tmp_dir/value")
    unset secret_value
    if ! az keyvault secret set --vault-name "$key_vault" --name "$secret_name" --file "$tmp_dir/value" \
        --encoding utf-8 --content-type client-secret --tags "appId=$app_id" --output none; then
      # A secret that never reached the vault must not linger on the app.
      az ad app credential delete --id "$app_id" --key-id \
        "$(az ad app credential list --id "$app_id" --query "[?displayName=='$label'].keyId | [0]" -o tsv)"
      return 1
    fi
    rm -rf "$tmp_dir"
    note "stored; the value was not displayed. Older secrets stay valid until they expire:"
    az ad app credential list --id "$app_id" --query "[?displayName!='$label'].[keyId, displayName, endDateTime]" -o tsv \
      | while IFS=$'\t' read -r key_id name end; do
          note "  '$name' until $end; once the app uses the new one: az ad app credential delete --id $app_id --key-id $key_id"
        done
  }
  if [[ -n "$stored" ]] && ! $rotate; then
    if [[ -n "$stored_for" && "$stored_for" != "$app_id" ]]; then
      echo "warning: the vault's '$secret_name' belongs to application $stored_for; rerun with --rotate-secret" >&2
    else
      note "present; --rotate-secret replaces it"
    fi
  elif $dry_run; then
    note "would create a client secret valid $years year(s) and store its Value"
  else
    store_secret
  fi
fi

step "Exchange Online (PowerShell only)"
note "Run, with the ExchangeOnlineManagement module:"
note "  ./infra/tenant/Setup-MailferryTenant.ps1 -ExchangeOnly -TenantId $tenant -AppId $app_id \\"
note "      -ServicePrincipalObjectId $sp_id -Protocols ${protocols} -Mailboxes '${mailboxes:-<mailboxes>}'"
note "or by hand in Exchange Online PowerShell (Connect-ExchangeOnline):"
note "  New-ServicePrincipal -AppId $app_id -ObjectId $sp_id -DisplayName '$display_name'"
note "  Add-MailboxPermission -Identity <mailbox> -User $sp_id -AccessRights FullAccess"
note "  Set-CASMailbox -Identity <mailbox> -ImapEnabled \$true"

step "Next"
note "azd env set MAILFERRY_M365_CLIENT_ID $app_id && azd provision"
