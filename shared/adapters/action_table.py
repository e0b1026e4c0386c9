"""The after-delivery phase's rows, in the checkpoint table beside each folder's checkpoint.

PartitionKey is the mailbox (encoded as for checkpoints); RowKey ``actions:<encoded folder>``
holds how far the actions went in a folder (ETag-guarded), ``folders`` the folders a
mailbox's patterns selected last run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.storage_errors import STORAGE_FAILURES, storage_error
from shared.adapters.table_rows import row_key as _key
from shared.delivery_actions import ActionState, KnownFolders
from shared.errors import CheckpointConflict

_ROLE = "Storage Table Data Contributor"
_ACTIONS = "actions:"
_FOLDERS = "folders"
# A string property holds at most 32K characters; a longer folder list keeps its start.
_TEXT_LIMIT = 30_000


class TableActionStore:
    """ActionStateStore over the checkpoint table."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get_action_state(self, mailbox: str, folder: str) -> ActionState | None:
        entity = self._get(mailbox, _ACTIONS + _key(folder), f"the action state of {mailbox}/{folder}")
        return None if entity is None else _state(entity)

    def put_action_state(self, state: ActionState) -> ActionState:
        entity = {
            "PartitionKey": _key(state.mailbox.lower()),
            "RowKey": _ACTIONS + _key(state.folder),
            "Mailbox": state.mailbox,
            "Folder": state.folder,
            "UidValidity": state.uidvalidity,
            "ActedThroughUid": state.acted_through_uid,
            "Pending": state.pending,
            "WithoutBlob": state.without_blob,
            "CopyUids": ",".join(map(str, state.copy_uids)),
            "CopyTarget": state.copy_target or "",
            "CopyTargetUidValidity": state.copy_target_uidvalidity,
            "CopyTargetUidNext": state.copy_target_uidnext,
        }
        what = f"action state of {state.mailbox}/{state.folder}"
        try:
            if state.etag is None:
                metadata = self._table.create_entity(entity)
            else:
                metadata = self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=state.etag,
                                                     match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError) as e:
            raise CheckpointConflict(f"The {what} was changed by another run; this run leaves the "
                                     "folder's actions to it.") from e
        except STORAGE_FAILURES as e:
            raise storage_error(f"write the {what}", e, role=_ROLE) from e
        return replace(state, etag=str(metadata["etag"]))

    def list_action_states(self) -> list[ActionState]:
        try:
            rows = self._table.query_entities(f"RowKey ge '{_ACTIONS}' and RowKey lt 'actions;'")
            return [_state(row) for row in rows]
        except ResourceNotFoundError:
            return []
        except STORAGE_FAILURES as e:
            raise storage_error("list the action states", e, role=_ROLE) from e

    def get_known_folders(self, mailbox: str) -> KnownFolders | None:
        entity = self._get(mailbox, _FOLDERS, f"the folders selected in {mailbox}")
        if entity is None:
            return None
        gone = tuple((str(name), datetime.fromisoformat(since))
                     for name, since in json.loads(entity.get("Gone") or "[]"))
        return KnownFolders(mailbox, tuple(json.loads(entity.get("Folders") or "[]")), gone)

    def put_known_folders(self, known: KnownFolders) -> None:
        entity = {
            "PartitionKey": _key(known.mailbox.lower()),
            "RowKey": _FOLDERS,
            "Mailbox": known.mailbox,
            "Folders": _json_within_limit(list(known.folders)),
            "Gone": _json_within_limit([[name, since.isoformat()] for name, since in known.gone]),
        }
        try:
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except STORAGE_FAILURES as e:
            raise storage_error(f"write the folders selected in {known.mailbox}", e, role=_ROLE) from e

    def _get(self, mailbox: str, row_key: str, what: str) -> Any:
        try:
            return self._table.get_entity(_key(mailbox.lower()), row_key)
        except ResourceNotFoundError:
            return None
        except STORAGE_FAILURES as e:
            raise storage_error(f"read {what}", e, role=_ROLE) from e


def _json_within_limit(items: list[Any]) -> str:
    while len(text := json.dumps(items, ensure_ascii=False)) > _TEXT_LIMIT:
        items = items[: len(items) * 3 // 4]
    return text


def _state(entity: Any) -> ActionState:
    metadata = getattr(entity, "metadata", {}) or {}
    uids = str(entity.get("CopyUids") or "")
    return ActionState(
        mailbox=entity.get("Mailbox") or unquote(entity["PartitionKey"]),
        folder=entity.get("Folder") or unquote(str(entity["RowKey"])[len(_ACTIONS):]),
        uidvalidity=int(entity["UidValidity"]),
        acted_through_uid=int(entity.get("ActedThroughUid", 0)),
        pending=int(entity.get("Pending", 0)),
        without_blob=int(entity.get("WithoutBlob", 0)),
        copy_uids=tuple(int(u) for u in uids.split(",") if u),
        copy_target=entity.get("CopyTarget") or None,
        copy_target_uidvalidity=int(entity.get("CopyTargetUidValidity", 0)),
        copy_target_uidnext=int(entity.get("CopyTargetUidNext", 0)),
        etag=metadata.get("etag"),
    )
