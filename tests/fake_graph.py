"""A local Microsoft Graph holding the recorded contract of the calls infra/tenant makes.

Serves, on 127.0.0.1, the few Graph v1.0 requests the tenant setup sends, with the shapes Graph
documents, and refuses everything else with 400 so a changed request is noticed:

- ``GET /v1.0/organization``: the verified domains.
- ``GET /v1.0/servicePrincipals(appId='{appId}')``: a service principal by application ID.
- ``GET /v1.0/servicePrincipals/{id}/appRoleAssignments``: the grants a client holds.
- ``POST /v1.0/servicePrincipals/{resource-id}/appRoleAssignedTo`` with ``principalId``,
  ``resourceId`` and ``appRoleId``: grants an application permission. The URL names the
  resource's service principal and must equal ``resourceId``; the role must be one of the
  resource's application roles. Answers 201 with the assignment.

Every request is appended to a JSON-lines log. The tenant is a JSON file that the server reads
for each request and rewrites after each grant.

    python -m tests.fake_graph --tenant tenant.json --log requests.jsonl --port-file port
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

_SERVICE_PRINCIPAL = re.compile(r"/v1\.0/servicePrincipals\(appId='([^']+)'\)")
_ASSIGNMENTS = re.compile(r"/v1\.0/servicePrincipals/([^/]+)/appRoleAssignments")
_ASSIGNED_TO = re.compile(r"/v1\.0/servicePrincipals/([^/]+)/appRoleAssignedTo")


class FakeGraph:
    """The tenant's directory objects and the request log."""

    def __init__(self, tenant_file: Path, log_file: Path) -> None:
        self.tenant_file = tenant_file
        self.log_file = log_file
        self.tenant: dict[str, Any] = {}
        self.lock = threading.Lock()

    def handle(self, method: str, target: str, body: bytes, content_type: str) -> tuple[int, Any]:
        """Status and JSON answer of one request, logged."""
        url = urlsplit(target)
        path = unquote(url.path)
        document = json.loads(body) if body else None
        with self.lock:
            self.tenant = json.loads(self.tenant_file.read_text(encoding="utf-8"))
            with self.log_file.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"method": method, "path": path, "query": unquote(url.query),
                                      "body": document}) + "\n")
            return self._answer(method, path, document, content_type)

    def _answer(self, method: str, path: str, document: Any, content_type: str) -> tuple[int, Any]:
        principals: list[dict[str, Any]] = self.tenant["servicePrincipals"]
        by_id = {p["id"]: p for p in principals}
        if method == "GET" and path == "/v1.0/organization":
            return 200, {"value": [{"verifiedDomains": [{"name": d} for d in self.tenant["domains"]]}]}
        if method == "GET" and (match := _SERVICE_PRINCIPAL.fullmatch(path)):
            found = [p for p in principals if p["appId"] == match.group(1)]
            return (200, found[0]) if found else _error(404, "Request_ResourceNotFound", "no such appId")
        if method == "GET" and (match := _ASSIGNMENTS.fullmatch(path)):
            if match.group(1) not in by_id:
                return _error(404, "Request_ResourceNotFound", "no such service principal")
            mine = [a for a in self.tenant["appRoleAssignments"] if a["principalId"] == match.group(1)]
            return 200, {"value": mine}
        if method == "POST" and (match := _ASSIGNED_TO.fullmatch(path)):
            return self._grant(match.group(1), document, content_type, by_id)
        return _error(400, "Request_BadRequest", f"{method} {path} is not in the recorded contract")

    def _grant(self, resource_id: str, document: Any, content_type: str,
               by_id: dict[str, dict[str, Any]]) -> tuple[int, Any]:
        if not content_type.startswith("application/json") or not isinstance(document, dict):
            return _error(400, "Request_BadRequest", "the body must be JSON")
        if set(document) != {"principalId", "resourceId", "appRoleId"}:
            return _error(400, "Request_BadRequest", f"unexpected properties {sorted(document)}")
        resource = by_id.get(resource_id)
        if resource is None:
            return _error(404, "Request_ResourceNotFound", f"no service principal {resource_id}")
        if document["resourceId"] != resource_id:
            return _error(400, "Request_BadRequest", "resourceId differs from the service principal in the URL")
        if document["principalId"] not in by_id:
            return _error(400, "Request_BadRequest", "principalId is no service principal of this tenant")
        roles = {r["id"] for r in resource.get("appRoles", []) if "Application" in r["allowedMemberTypes"]}
        if document["appRoleId"] not in roles:
            return _error(400, "Request_BadRequest", "Permission being assigned was not found on application")
        if self.tenant.get("denyGrants"):
            return _error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        assignment = {"id": uuid.uuid4().hex, **document, "principalType": "ServicePrincipal"}
        self.tenant["appRoleAssignments"].append(assignment)
        self.tenant_file.write_text(json.dumps(self.tenant), encoding="utf-8")
        return 201, assignment


def _error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message}}


def serve(graph: FakeGraph, port_file: Path) -> None:
    """Serves until the process is stopped; writes the port it listens on to ``port_file``."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, answer = graph.handle(self.command, self.path, self.rfile.read(length),
                                          self.headers.get("Content-Type", ""))
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_DELETE = _reply  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: object) -> None:
            """The request log is the JSON-lines file."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    temporary = port_file.with_suffix(".tmp")
    temporary.write_text(str(server.server_address[1]), encoding="utf-8")
    temporary.rename(port_file)
    server.serve_forever()


def main() -> None:
    """Command line: the tenant file, the log file and where to write the port."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenant", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    arguments = parser.parse_args()
    serve(FakeGraph(arguments.tenant, arguments.log), arguments.port_file)


if __name__ == "__main__":
    main()
