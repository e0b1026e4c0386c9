"""The fronts' control API: JSON over HTTP on 127.0.0.1, each request carrying the key.

    GET    /health            {"ok": true}
    GET    /faults            the live faults
    POST   /faults            a fault (see rules.Fault) → {"id": n, "fault": {...}}
    DELETE /faults/{id}       {"removed": true|false}
    POST   /clear             {"counters": true} → every fault and outage ends
    GET    /counters          connections, commands and bytes per mailbox; storage requests
    GET    /events            the faults that fired, oldest first
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from devstack.faults.book import FaultBook
from devstack.faults.rules import Fault, FaultError

KEY_HEADER = "X-Faults-Key"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def build_app(book: FaultBook, key: str) -> web.Application:
    """The aiohttp application serving ``book``."""

    @web.middleware
    async def require_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not hmac.compare_digest(request.headers.get(KEY_HEADER, ""), key):
            return _json({"error": f"missing or wrong {KEY_HEADER} header"}, 401)
        return await handler(request)

    async def health(request: web.Request) -> web.Response:
        return _json({"ok": True})

    async def list_faults(request: web.Request) -> web.Response:
        return _json([f.to_json() for f in book.live()])

    async def add_fault(request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise FaultError("the body must be a JSON object")
            fault = book.add(Fault.from_json(data))
        except (FaultError, json.JSONDecodeError) as e:
            return _json({"error": str(e)}, 400)
        return _json({"id": fault.id, "fault": fault.to_json()})

    async def remove_fault(request: web.Request) -> web.Response:
        try:
            fault_id = int(request.match_info["fault_id"])
        except ValueError:
            return _json({"error": "the fault id is a number"}, 400)
        return _json({"removed": book.remove(fault_id)})

    async def clear(request: web.Request) -> web.Response:
        data = await request.json() if request.can_read_body else {}
        book.clear(counters=bool(data.get("counters", True)))
        return _json({"cleared": True})

    async def counters(request: web.Request) -> web.Response:
        return _json(book.counters.to_json())

    async def events(request: web.Request) -> web.Response:
        return _json(list(book.events))

    app = web.Application(middlewares=[require_key])
    app.add_routes([
        web.get("/health", health),
        web.get("/faults", list_faults),
        web.post("/faults", add_fault),
        web.delete("/faults/{fault_id}", remove_fault),
        web.post("/clear", clear),
        web.get("/counters", counters),
        web.get("/events", events),
    ])
    return app
