#!/bin/sh
# azd postdown hook: the deleted Key Vault keeps its name while soft-deleted (for its whole
# retention with purge protection), so the next `azd up` of this environment must use another
# name. main.bicepparam passes MAILFERRY_KEY_VAULT_SEED to keyVaultNameSeed.
set -eu
seed="$(date -u +%Y%m%d%H%M%S)"
azd env set MAILFERRY_KEY_VAULT_SEED "$seed"
echo "The next 'azd up' creates a new Key Vault (MAILFERRY_KEY_VAULT_SEED=$seed); run the tenant setup again to store the client secret in it."
