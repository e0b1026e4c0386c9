"""Reading the mail storage connection: a connection string, or endpoints plus an identity."""

from __future__ import annotations

from dataclasses import dataclass

from shared.connection_string import connection_string_problems, endpoint_problem
from shared.error_text import quoted
from shared.model import Secret
from shared.setting_reader import GUID, SettingReader
from shared.setting_specs import SPECS, STORAGE


@dataclass(frozen=True)
class StorageConnection:
    """How to reach the mail storage account: a connection string, or endpoints plus an identity."""

    connection_string: Secret | None = None
    blob_service_uri: str | None = None
    table_service_uri: str | None = None
    queue_service_uri: str | None = None
    managed_identity_client_id: str | None = None



class StorageSettingReader(SettingReader):
    """The MAIL_STORAGE settings, following the Functions convention for connections."""

    def storage(self, *, needs_queue: bool) -> StorageConnection:
        """A connection string (local runs) or the identity-based endpoints (on Azure)."""
        connection_string = self.raw(STORAGE)
        blob_uri = self.raw(f"{STORAGE}__blobServiceUri")
        table_uri = self.raw(f"{STORAGE}__tableServiceUri")
        queue_uri = self.raw(f"{STORAGE}__queueServiceUri")
        credential = self.raw(f"{STORAGE}__credential")
        client_id = self.raw(f"{STORAGE}__clientId")
        if connection_string:
            services = ("blob", "table", "queue") if needs_queue else ("blob", "table")
            problems = connection_string_problems(connection_string, services=services)
            if problems:
                self.problems.append(f"{STORAGE} is not a usable connection string: it "
                                     f"{'; it '.join(problems)}.")
            return StorageConnection(connection_string=Secret(connection_string))
        if not (blob_uri and table_uri):
            self.problems.append(
                f"{STORAGE} is not set: give a connection string in {STORAGE}, or the identity-based "
                f"{STORAGE}__blobServiceUri and {STORAGE}__tableServiceUri."
            )
            return StorageConnection()
        for name, uri in ((f"{STORAGE}__blobServiceUri", blob_uri),
                          (f"{STORAGE}__tableServiceUri", table_uri),
                          (f"{STORAGE}__queueServiceUri", queue_uri)):
            wrong = endpoint_problem(uri) if uri else None
            if wrong:
                self.problems.append(f"{name} {wrong}; expected the service's endpoint, e.g. "
                                     f"{SPECS[name].example}.")
        if credential and credential.lower() != "managedidentity":
            self.problems.append(f"{STORAGE}__credential is {quoted(credential)}, expected managedidentity.")
        if client_id and not GUID.match(client_id):
            self.problems.append(f"{STORAGE}__clientId is {quoted(client_id)}, expected a GUID.")
        return StorageConnection(
            blob_service_uri=blob_uri,
            table_service_uri=table_uri,
            queue_service_uri=queue_uri,
            managed_identity_client_id=client_id,
        )
