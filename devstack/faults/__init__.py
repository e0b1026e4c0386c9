"""Exchange behaviour layer: TLS fronts for IMAP and POP3 and relays for Azurite's ports that
misbehave on cue (throttling, BYE, resets, stalls, trickles, 503s, outages).

Start them with ``stack.start_faults()`` (or :meth:`FaultFront.start`), point the app at them
with ``front.settings_env(...)`` and script faults through the :class:`FaultClient` methods.
"""

from devstack.faults.client import Connections, FaultClient, FaultEvent
from devstack.faults.front import FaultFront
from devstack.faults.rules import FaultError

__all__ = ["Connections", "FaultClient", "FaultError", "FaultEvent", "FaultFront"]
