"""``python -m devstack.faults --state-dir DIR``: run the fronts (see devstack.faults.server)."""

import sys

from devstack.faults.server import main

sys.exit(main())
