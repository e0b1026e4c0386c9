<#
.SYNOPSIS
    Sets up a Microsoft 365 tenant so mailferry can read mailboxes app-only over IMAP (or POP).

.DESCRIPTION
    Idempotent: every step looks first and changes only what is missing, so the script can be
    rerun after a failure, for new mailboxes, or to rotate the client secret. -WhatIf prints
    what it would change and changes nothing.

    Entra ID part (Microsoft Graph PowerShell):
      1. finds the app registration (by -AppId or -DisplayName) or creates it;
      2. adds the IMAP.AccessAsApp / POP.AccessAsApp application permissions of
         "Office 365 Exchange Online", looked up by value in that API's AppRoles;
      3. creates the app's service principal (the Enterprise Application) if missing;
      4. grants admin consent (an app role assignment per permission);
      5. -AuthMode secret (default): creates a client secret and writes its Value into Key
         Vault without printing it, unless the vault already holds one for this app
         (-RotateSecret forces a new one). -AuthMode federated: adds a federated identity
         credential that trusts the Function App's managed identity; nothing is stored.
         -AuthMode certificate: nothing here (see docs/tenant.md, "By hand").
    Exchange Online part (ExchangeOnlineManagement):
      6. registers the Enterprise Application's object ID with New-ServicePrincipal;
      7. grants FullAccess on each mailbox and enables IMAP (or POP) on it;
      8. reports each mailbox's state, with Test-ServicePrincipalAuthorization.

    Modules: Microsoft.Graph.Authentication, Microsoft.Graph.Applications, Az.Accounts,
    Az.KeyVault, ExchangeOnlineManagement (3.x). Roles: Global Administrator, or Privileged Role
    Administrator (consent) + Application Administrator + Exchange Administrator; Key Vault
    Secrets Officer on the vault (main.bicep grants it to the principalId it is given).

.EXAMPLE
    ./Setup-MailferryTenant.ps1 -TenantId contoso.onmicrosoft.com -KeyVaultName kv-mf-abc123 `
        -Mailboxes 'ops@contoso.com, billing@contoso.com:INBOX|Invoices' -WhatIf

.EXAMPLE
    ./Setup-MailferryTenant.ps1 -ExchangeOnly -TenantId contoso.onmicrosoft.com `
        -AppId <appId> -ServicePrincipalObjectId <objectId> -Mailboxes ops@contoso.com
#>
[CmdletBinding(SupportsShouldProcess = $true, DefaultParameterSetName = 'All')]
param(
    # Tenant that owns the mailboxes: ID or a verified domain.
    [Parameter(Mandatory = $true)]
    [string] $TenantId,

    # Mailboxes, as addresses or in the MAILBOXES format ("a@x.com, b@x.com:INBOX|Archive").
    [Parameter(Mandatory = $true)]
    [string[]] $Mailboxes,

    # Application (client) ID of an existing app registration. Omitted: found by -DisplayName, or created.
    [string] $AppId,

    [string] $DisplayName = 'mailferry',

    [ValidateSet('IMAP', 'POP')]
    [string[]] $Protocols = @('IMAP'),

    # secret, certificate or federated: the AUTH_MODE the Function App runs with.
    [ValidateSet('secret', 'certificate', 'federated')]
    [string] $AuthMode = 'secret',

    # Vault that receives the client secret (azd env get-value AZURE_KEY_VAULT_NAME).
    [string] $KeyVaultName,

    # AUTH_MODE=federated: principal (object) ID of the Function App's user-assigned identity
    # (azd env get-value MANAGED_IDENTITY_PRINCIPAL_ID); its tenant is -AzureTenantId.
    [string] $ManagedIdentityPrincipalId,

    [string] $SecretName = 'mailferry-client-secret',

    [ValidateRange(1, 24)]
    [int] $SecretMonthsValid = 12,

    # Create a new client secret even when the vault already holds one for this app.
    [switch] $RotateSecret,

    # Tenant of the Azure subscription holding the vault, when it is not -TenantId.
    [string] $AzureTenantId,

    # The M365_CLOUD of the app: global (also GCC), usgov (GCC High), usgovdod or china.
    [ValidateSet('global', 'usgov', 'usgovdod', 'china')]
    [string] $Cloud = 'global',

    # Admin account for Exchange Online sign-in (skips the account picker).
    [string] $ExchangeAdminUpn,

    # Only the Entra ID and Key Vault part (steps 1-5).
    [Parameter(ParameterSetName = 'EntraOnly')]
    [switch] $SkipExchange,

    # Only the Exchange Online part (steps 6-8), e.g. after setup-entra.sh; needs -AppId.
    [Parameter(ParameterSetName = 'ExchangeOnly')]
    [switch] $ExchangeOnly,

    # Object ID of the Enterprise Application (service principal), for -ExchangeOnly.
    [Parameter(ParameterSetName = 'ExchangeOnly', Mandatory = $true)]
    [string] $ServicePrincipalObjectId
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$ExchangeOnlineApiAppId = '00000002-0000-0ff1-ce00-000000000000'
# Per cloud: module environments, the managed identity's token issuer and the federated audience
# (the same audiences as shared/clouds.py).
$Environments = @{
    global   = @{ Graph = 'Global';   Azure = 'AzureCloud';        Exchange = 'O365Default'
                  Login = 'https://login.microsoftonline.com';        Audience = 'api://AzureADTokenExchange' }
    usgov    = @{ Graph = 'USGov';    Azure = 'AzureUSGovernment'; Exchange = 'O365USGovGCCHigh'
                  Login = 'https://login.microsoftonline.us';         Audience = 'api://AzureADTokenExchangeUSGov' }
    usgovdod = @{ Graph = 'USGovDoD'; Azure = 'AzureUSGovernment'; Exchange = 'O365USGovDoD'
                  Login = 'https://login.microsoftonline.us';         Audience = 'api://AzureADTokenExchangeUSGov' }
    china    = @{ Graph = 'China';    Azure = 'AzureChinaCloud';   Exchange = 'O365China'
                  Login = 'https://login.partner.microsoftonline.cn'; Audience = 'api://AzureADTokenExchangeChina' }
}
$environment = $Environments[$Cloud.ToLowerInvariant()]
$doEntra = -not $ExchangeOnly
$doExchange = -not $SkipExchange
$placeholder = '<created on a real run>'

function Write-Step([string] $Text) { Write-Host "==> $Text" -ForegroundColor Cyan }

function Invoke-Always([scriptblock] $Block) {
    # Sign-ins and sign-outs run even under -WhatIf: the dry run still reads the tenant.
    $WhatIfPreference = $false
    & $Block
}
function Write-Done([string] $Text) { Write-Host "    $Text" }

function Assert-Module([string[]] $Names) {
    $missing = @($Names | Where-Object { -not (Get-Module -ListAvailable -Name $_) })
    if ($missing.Count -gt 0) {
        throw "Missing PowerShell modules: $($missing -join ', '). Install them with: " +
              "Install-Module $($missing -join ', ') -Scope CurrentUser"
    }
}

function Get-MailboxAddresses([string[]] $Values) {
    # Same list syntax as the MAILBOXES setting; the folders after ':' do not matter here.
    $addresses = foreach ($value in $Values) {
        foreach ($part in ($value -split '[,;\r\n]')) {
            $address = ($part -split ':', 2)[0].Trim()
            if ($address) { $address }
        }
    }
    $unique = @($addresses | Sort-Object -Unique)
    if ($unique.Count -eq 0) { throw 'No mailbox given in -Mailboxes.' }
    $bad = @($unique | Where-Object { $_ -notmatch '^[^@\s]+@[^@\s]+\.[^@\s]+$' })
    if ($bad.Count -gt 0) { throw "Not email addresses: $($bad -join ', ')" }
    return $unique
}

$mailboxAddresses = Get-MailboxAddresses $Mailboxes
if ($ExchangeOnly -and -not $AppId) { throw '-ExchangeOnly needs -AppId and -ServicePrincipalObjectId.' }
if (-not $ExchangeOnly -and $AuthMode -eq 'secret' -and -not $KeyVaultName) { throw '-AuthMode secret needs -KeyVaultName.' }
if (-not $ExchangeOnly -and $AuthMode -eq 'federated' -and -not $ManagedIdentityPrincipalId) {
    throw '-AuthMode federated needs -ManagedIdentityPrincipalId (azd env get-value MANAGED_IDENTITY_PRINCIPAL_ID).'
}
$modules = @()
if ($doEntra) { $modules += 'Microsoft.Graph.Authentication', 'Microsoft.Graph.Applications' }
if ($doEntra -and $AuthMode -eq 'secret') { $modules += 'Az.Accounts', 'Az.KeyVault' }
if ($doExchange) { $modules += 'ExchangeOnlineManagement' }
Assert-Module $modules

# ------------------------------------------------------------------------------------------------
# Entra ID: app registration, permissions, service principal, consent, secret
# ------------------------------------------------------------------------------------------------
$spObjectId = $ServicePrincipalObjectId
if ($doEntra) {
    Write-Step "Connecting to Microsoft Graph ($($environment.Graph)) in tenant $TenantId"
    Invoke-Always {
        Connect-MgGraph -TenantId $TenantId -Environment $environment.Graph -NoWelcome `
            -Scopes 'Application.ReadWrite.All', 'AppRoleAssignment.ReadWrite.All' | Out-Null
    }

    Write-Step 'Looking up the Office 365 Exchange Online API and its application roles'
    $exchangeApi = Get-MgServicePrincipal -Filter "appId eq '$ExchangeOnlineApiAppId'"
    if (-not $exchangeApi) { throw 'Office 365 Exchange Online is not in this tenant: is Exchange Online licensed?' }
    $appRoles = foreach ($protocol in $Protocols) {
        $value = "$protocol.AccessAsApp"
        $role = $exchangeApi.AppRoles | Where-Object { $_.Value -eq $value -and $_.AllowedMemberTypes -contains 'Application' }
        if (-not $role) { throw "The Exchange Online API has no application role '$value'." }
        $role
    }
    Write-Done ("found " + (($appRoles | ForEach-Object { "$($_.Value) ($($_.Id))" }) -join ', '))

    Write-Step 'App registration'
    if ($AppId) {
        $app = Get-MgApplication -Filter "appId eq '$AppId'"
        if (-not $app) { throw "No app registration with application ID $AppId in tenant $TenantId." }
    } else {
        $apps = @(Get-MgApplication -Filter "displayName eq '$DisplayName'" -All)
        if ($apps.Count -gt 1) { throw "$($apps.Count) app registrations are named '$DisplayName': pass -AppId." }
        $app = $apps | Select-Object -First 1
    }
    if ($app) {
        Write-Done "found '$($app.DisplayName)', application ID $($app.AppId)"
    } elseif ($PSCmdlet.ShouldProcess($DisplayName, 'Create app registration (single tenant)')) {
        $app = New-MgApplication -DisplayName $DisplayName -SignInAudience 'AzureADMyOrg'
        Write-Done "created '$DisplayName', application ID $($app.AppId)"
    }

    Write-Step 'Application permissions on Office 365 Exchange Online'
    if ($app) {
        $required = @($app.RequiredResourceAccess | Where-Object { $_.ResourceAppId -ne $ExchangeOnlineApiAppId } |
            ForEach-Object { @{ ResourceAppId = $_.ResourceAppId
                                ResourceAccess = @($_.ResourceAccess | ForEach-Object { @{ Id = $_.Id; Type = $_.Type } }) } })
        $current = $app.RequiredResourceAccess | Where-Object { $_.ResourceAppId -eq $ExchangeOnlineApiAppId }
        $access = @(if ($current) { $current.ResourceAccess | ForEach-Object { @{ Id = $_.Id; Type = $_.Type } } })
        $missingRoles = @($appRoles | Where-Object { $id = $_.Id; -not ($access | Where-Object { $_.Id -eq $id -and $_.Type -eq 'Role' }) })
        if ($missingRoles.Count -eq 0) {
            Write-Done 'already requested'
        } elseif ($PSCmdlet.ShouldProcess($app.AppId, "Request $(($missingRoles.Value) -join ', ')")) {
            $access += @($missingRoles | ForEach-Object { @{ Id = $_.Id; Type = 'Role' } })
            $required += @{ ResourceAppId = $ExchangeOnlineApiAppId; ResourceAccess = $access }
            Update-MgApplication -ApplicationId $app.Id -RequiredResourceAccess $required
            Write-Done "requested $(($missingRoles.Value) -join ', ')"
        }
    } else {
        Write-Done "would request $(($appRoles.Value) -join ', ')"
    }

    Write-Step 'Enterprise Application (service principal)'
    $sp = if ($app) { Get-MgServicePrincipal -Filter "appId eq '$($app.AppId)'" }
    if ($sp) {
        Write-Done "found, object ID $($sp.Id)"
    } elseif ($PSCmdlet.ShouldProcess($DisplayName, 'Create service principal')) {
        $sp = New-MgServicePrincipal -AppId $app.AppId
        Write-Done "created, object ID $($sp.Id)"
    }
    $spObjectId = if ($sp) { $sp.Id } else { $placeholder }

    Write-Step 'Admin consent'
    foreach ($role in $appRoles) {
        $granted = if ($sp) {
            Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $sp.Id -All |
                Where-Object { $_.AppRoleId -eq $role.Id -and $_.ResourceId -eq $exchangeApi.Id }
        }
        if ($granted) {
            Write-Done "$($role.Value): granted"
        } elseif ($PSCmdlet.ShouldProcess($DisplayName, "Grant admin consent for $($role.Value)")) {
            New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $sp.Id -PrincipalId $sp.Id `
                -ResourceId $exchangeApi.Id -AppRoleId $role.Id | Out-Null
            Write-Done "$($role.Value): granted now"
        }
    }

    $azTenant = if ($AzureTenantId) { $AzureTenantId } else { $TenantId }
    if ($AuthMode -eq 'federated') {
        Write-Step 'Federated identity credential for the managed identity'
        $issuer = "$($environment.Login)/$azTenant/v2.0"
        $existing = if ($app) {
            Get-MgApplicationFederatedIdentityCredential -ApplicationId $app.Id -All |
                Where-Object { $_.Issuer -eq $issuer -and $_.Subject -eq $ManagedIdentityPrincipalId }
        }
        if ($existing) {
            Write-Done "present: issuer $issuer, subject $ManagedIdentityPrincipalId"
        } elseif ($PSCmdlet.ShouldProcess($DisplayName, "Trust managed identity $ManagedIdentityPrincipalId (issuer $issuer)")) {
            New-MgApplicationFederatedIdentityCredential -ApplicationId $app.Id -BodyParameter @{
                Name      = "mailferry-$($ManagedIdentityPrincipalId.Substring(0, 8))"
                Issuer    = $issuer
                Subject   = $ManagedIdentityPrincipalId
                Audiences = @($environment.Audience)
            } | Out-Null
            Write-Done "added: issuer $issuer, subject $ManagedIdentityPrincipalId"
        }
    } elseif ($AuthMode -eq 'certificate') {
        Write-Step 'Certificate'
        Write-Done 'not handled here: create it in Key Vault and upload its public part (docs/tenant.md, by hand).'
    }
}
if ($doEntra -and $AuthMode -eq 'secret') {
    Write-Step "Client secret in Key Vault $KeyVaultName as '$SecretName'"
    Invoke-Always { Connect-AzAccount -Tenant $azTenant -Environment $environment.Azure | Out-Null }
    $stored = Get-AzKeyVaultSecret -VaultName $KeyVaultName -Name $SecretName -ErrorAction SilentlyContinue
    $storedFor = if ($stored -and $stored.Tags) { $stored.Tags['appId'] } else { $null }
    if ($stored -and -not $RotateSecret) {
        if ($app -and $storedFor -and $storedFor -ne $app.AppId) {
            Write-Warning "The vault's '$SecretName' belongs to application $storedFor, not $($app.AppId): rerun with -RotateSecret."
        } else {
            Write-Done "present (expires $($stored.Expires)); -RotateSecret replaces it"
        }
    } elseif ($PSCmdlet.ShouldProcess("$KeyVaultName/$SecretName", "Create a client secret valid $SecretMonthsValid months and store its Value")) {
        $end = (Get-Date).ToUniversalTime().AddMonths($SecretMonthsValid)
        $label = "mailferry $(Get-Date -Format 'yyyy-MM-dd HHmmss')"
        $credential = Add-MgApplicationPassword -ApplicationId $app.Id `
            -PasswordCredential @{ DisplayName = $label; EndDateTime = $end }
        try {
            $secure = ConvertTo-SecureString -String $credential.SecretText -AsPlainText -Force
            Set-AzKeyVaultSecret -VaultName $KeyVaultName -Name $SecretName -SecretValue $secure `
                -Expires $end -ContentType 'client-secret' `
                -Tag @{ appId = $app.AppId; keyId = "$($credential.KeyId)" } | Out-Null
        } catch {
            # A secret that never reached the vault is useless and must not linger on the app.
            Remove-MgApplicationPassword -ApplicationId $app.Id -KeyId $credential.KeyId
            throw
        } finally {
            $credential = $null
            $secure = $null
        }
        Write-Done "stored (expires $($end.ToString('yyyy-MM-dd'))); the value was not displayed"
        $older = @((Get-MgApplication -ApplicationId $app.Id).PasswordCredentials | Where-Object { $_.DisplayName -ne $label })
        foreach ($old in $older) {
            Write-Done "older secret '$($old.DisplayName)' (key $($old.KeyId)) stays valid until $($old.EndDateTime);"
            Write-Done "  once the app runs on the new one: Remove-MgApplicationPassword -ApplicationId $($app.Id) -KeyId $($old.KeyId)"
        }
    }
}
if ($doEntra) { $AppId = if ($app) { $app.AppId } else { $placeholder } }

# ------------------------------------------------------------------------------------------------
# Exchange Online: service principal, mailbox permissions, protocols, verification
# ------------------------------------------------------------------------------------------------
if ($doExchange) {
    Write-Step "Connecting to Exchange Online ($($environment.Exchange))"
    $exchangeArgs = @{ ExchangeEnvironmentName = $environment.Exchange; ShowBanner = $false }
    if ($ExchangeAdminUpn) { $exchangeArgs.UserPrincipalName = $ExchangeAdminUpn }
    Invoke-Always { Connect-ExchangeOnline @exchangeArgs }

    Write-Step 'Exchange Online service principal'
    $exoSp = $null
    if ($AppId -ne $placeholder) {
        try { $exoSp = Get-ServicePrincipal -Identity $AppId -ErrorAction Stop } catch { $exoSp = $null }
    }
    if ($exoSp) {
        # The object ID must be the Enterprise Application's; the App Registration's is the classic mistake.
        $registered = if ($exoSp.PSObject.Properties['ObjectId']) { $exoSp.ObjectId } else { $exoSp.ServiceId }
        if ($spObjectId -ne $placeholder -and "$registered" -ne "$spObjectId") {
            throw "Exchange Online registers application $AppId with object ID $registered, but its " +
                  "Enterprise Application's object ID is $spObjectId (IMAP would answer 'AUTHENTICATE failed'). " +
                  "Remove it with: Remove-ServicePrincipal -Identity $AppId ; then rerun this script."
        }
        Write-Done "found, object ID $registered"
    } elseif ($PSCmdlet.ShouldProcess($AppId, "New-ServicePrincipal with object ID $spObjectId")) {
        # Older module versions call the object ID -ServiceId.
        $idParameter = if ((Get-Command New-ServicePrincipal).Parameters.ContainsKey('ObjectId')) { 'ObjectId' } else { 'ServiceId' }
        $newArgs = @{ AppId = $AppId; DisplayName = $DisplayName; $idParameter = $spObjectId }
        $exoSp = New-ServicePrincipal @newArgs
        Write-Done "registered with object ID $spObjectId"
    }
    $principal = if ($exoSp) { "$($exoSp.Identity)" } else { $spObjectId }
    $principalNames = @($principal, $spObjectId, $AppId, $DisplayName, $(if ($exoSp) { $exoSp.DisplayName })) |
        Where-Object { $_ }

    $report = foreach ($mailbox in $mailboxAddresses) {
        Write-Step "Mailbox $mailbox"
        try { $recipient = Get-EXOMailbox -Identity $mailbox -ErrorAction Stop } catch { $recipient = $null }
        if (-not $recipient) {
            Write-Warning "$mailbox is not a mailbox in this organization (groups are not accepted); skipped."
            [pscustomobject]@{ Mailbox = $mailbox; FullAccess = $false; Imap = $null; Pop = $null; Note = 'not a mailbox' }
            continue
        }
        $hasAccess = {
            @(Get-MailboxPermission -Identity $mailbox | Where-Object {
                "$($_.User)" -in $principalNames -and $_.AccessRights -contains 'FullAccess' -and -not $_.Deny
            }).Count -gt 0
        }
        if (& $hasAccess) {
            Write-Done 'FullAccess: present'
        } elseif ($PSCmdlet.ShouldProcess($mailbox, "Add-MailboxPermission FullAccess for $principal")) {
            # Adding a permission that exists only warns, so a rerun is harmless.
            Add-MailboxPermission -Identity $mailbox -User $principal -AccessRights FullAccess `
                -InheritanceType All -Confirm:$false | Out-Null
            Write-Done 'FullAccess: granted'
        }
        $cas = Get-CASMailbox -Identity $mailbox
        $changes = @{}
        if ($Protocols -contains 'IMAP' -and -not $cas.ImapEnabled) { $changes.ImapEnabled = $true }
        if ($Protocols -contains 'POP' -and -not $cas.PopEnabled) { $changes.PopEnabled = $true }
        if ($changes.Count -eq 0) {
            Write-Done "$($Protocols -join '/'): enabled"
        } elseif ($PSCmdlet.ShouldProcess($mailbox, "Set-CASMailbox $(($changes.Keys | Sort-Object) -join ', ')")) {
            Set-CASMailbox -Identity $mailbox @changes
            Write-Done "$(($changes.Keys | Sort-Object) -join ', '): set"
        }
        if ($exoSp) {
            # Lists grants of RBAC for Applications; IMAP/POP rely on FullAccess instead, so an
            # empty answer here is expected and not a failure.
            try {
                $rbac = @(Test-ServicePrincipalAuthorization -Identity $principal -Resource $mailbox -ErrorAction Stop)
                Write-Done "Test-ServicePrincipalAuthorization: $($rbac.Count) RBAC-for-Applications grant(s)"
            } catch {
                Write-Done "Test-ServicePrincipalAuthorization: $($_.Exception.Message)"
            }
        }
        $cas = Get-CASMailbox -Identity $mailbox
        [pscustomobject]@{
            Mailbox    = $mailbox
            FullAccess = (& $hasAccess)
            Imap       = $cas.ImapEnabled
            Pop        = $cas.PopEnabled
            Note       = if ($WhatIfPreference) { 'dry run: state before changes' } else { '' }
        }
    }
    Write-Step 'Mailbox state'
    $report | Format-Table -AutoSize | Out-String | Write-Host
    Invoke-Always { Disconnect-ExchangeOnline -Confirm:$false }
}

Write-Step 'Next'
Write-Host "    Tenant ID:        $TenantId"
Write-Host "    Application ID:   $AppId"
Write-Host "    SP object ID:     $spObjectId"
if ($doEntra -and $AuthMode -eq 'secret') { Write-Host "    Secret:           $KeyVaultName / $SecretName (value not shown)" }
Write-Host '    Point the Function App at the app registration, then redeploy:'
Write-Host "      azd env set MAILFERRY_M365_CLIENT_ID $AppId"
Write-Host '      azd provision'
Write-Host '    Exchange Online can take up to an hour to apply new mailbox permissions.'
