"""Local test stack for mailferry: Azurite, Dovecot with XOAUTH2 and an identity emulator.

Nothing here is deployed. ``python -m devstack up|down|env`` drives it from a shell,
:class:`devstack.stack.Stack` from tests.
"""
