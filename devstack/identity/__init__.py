"""An HTTPS emulator of Entra ID (v2 token endpoint), Key Vault secrets and certificates and
the App Service / Functions managed-identity endpoint, for one tenant.

``server`` reads requests and writes replies; ``routes`` picks the module that answers:
``entra`` (with ``client_authentication`` and the ``aadsts`` errors), ``vault``,
``managed_identity`` or ``admin``. ``state`` holds what they change; ``tokens`` and ``certs``
make and read JWTs and certificates.
"""
