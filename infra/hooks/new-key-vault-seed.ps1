# azd postdown hook (Windows): see new-key-vault-seed.sh.
$ErrorActionPreference = 'Stop'
$seed = (Get-Date).ToUniversalTime().ToString('yyyyMMddHHmmss')
azd env set MAILFERRY_KEY_VAULT_SEED $seed
if ($LASTEXITCODE -ne 0) { throw "azd env set MAILFERRY_KEY_VAULT_SEED failed ($LASTEXITCODE)" }
Write-Host "The next 'azd up' creates a new Key Vault (MAILFERRY_KEY_VAULT_SEED=$seed); run the tenant setup again to store the client secret in it."
