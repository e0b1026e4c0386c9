"""The fixed texts log queries and alerts match, defined once for every module that logs them.

Each line starts with its text, then ``: <mailbox>: …``; the failing-mailbox alert in
infra/bicep counts the lines that start with ``FAILURE_LOG_TEXT``.
"""

from __future__ import annotations

FAILURE_LOG_TEXT = "mailbox poll failed"
# A folder that cannot be opened: logged apart from whole-mailbox failures, as the others
# in the mailbox were still delivered.
FOLDER_FAILURE_LOG_TEXT = "folder poll failed"
# The server throttled a mailbox: a delay, not a failure (WARNING).
THROTTLED_LOG_TEXT = "mailbox throttled"
# A run left a mailbox alone: throttled until later, or another run is polling it (INFO).
SKIPPED_LOG_TEXT = "mailbox skipped"
