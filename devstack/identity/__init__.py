"""An HTTPS emulator of Entra ID (v2 token endpoint), Key Vault secrets and the
App Service / Functions managed-identity endpoint, for one tenant."""
