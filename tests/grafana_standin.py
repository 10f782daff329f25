"""A local stand-in for the few Grafana HTTP API routes `coldtrace dashboards push` uses,
answering with the request and response shapes of Grafana's published API reference
(folders, data sources, dashboards, alerting provisioning). Grafana itself cannot run on
these machines. It keeps what it is given in memory and records every request.

Like Grafana it refuses a request without the service account token (401), a body missing
a field Grafana requires (400), a dashboard or data source whose uid or name exists when
creating (412 / 409), and answers 404 for what it does not hold."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JSON = dict[str, Any]


@dataclass
class Request:
    method: str
    path: str
    body: Any


@dataclass
class State:
    token: str
    folders: dict[str, JSON] = field(default_factory=dict)
    datasources: dict[str, JSON] = field(default_factory=dict)
    dashboards: dict[str, JSON] = field(default_factory=dict)  # uid -> {dashboard, meta}
    rules: dict[str, JSON] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


RULE_REQUIRED = (
    "title",
    "condition",
    "data",
    "folderUID",
    "ruleGroup",
    "noDataState",
    "execErrState",
    "for",
)


class Answer(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


def _missing(body: JSON, *names: str) -> None:
    absent = [n for n in names if n not in body]
    if absent:
        raise Answer(400, {"message": f"bad request data: missing {', '.join(absent)}"})


def route(state: State, method: str, path: str, body: Any) -> tuple[int, Any]:
    """Grafana's answer (status, JSON body) to one request."""
    m = re.fullmatch(r"/api/folders(?:/([^/]+))?", path)
    if m:
        return _folders(state, method, m[1], body)
    m = re.fullmatch(r"/api/datasources(?:/uid/([^/]+))?", path)
    if m:
        return _datasources(state, method, m[1], body)
    m = re.fullmatch(r"/api/dashboards/(?:uid/([^/]+)|(db))", path)
    if m:
        return _dashboards(state, method, m[1], body)
    m = re.fullmatch(r"/api/v1/provisioning/alert-rules(?:/([^/]+))?", path)
    if m:
        return _rules(state, method, m[1], body)
    raise Answer(404, {"message": "Not found"})


def _folders(state: State, method: str, uid: str | None, body: Any) -> tuple[int, Any]:
    if method == "GET" and uid:
        if uid not in state.folders:
            raise Answer(404, {"message": "folder not found", "status": "not-found"})
        return 200, state.folders[uid]
    if method == "POST" and uid is None:
        _missing(body, "title")
        fuid = body.get("uid") or f"f{state.next_id}"
        if fuid in state.folders:
            raise Answer(409, {"message": "a folder with the same uid already exists"})
        folder = {
            "id": state.new_id(),
            "uid": fuid,
            "title": body["title"],
            "url": f"/dashboards/f/{fuid}/",
            "version": 1,
        }
        state.folders[fuid] = folder
        return 200, folder
    if method == "PUT" and uid in state.folders:
        _missing(body, "title")
        folder = state.folders[uid]
        folder.update(title=body["title"], version=folder["version"] + 1)
        return 200, folder
    raise Answer(405, {"message": "method not allowed"})


def _datasources(state: State, method: str, uid: str | None, body: Any) -> tuple[int, Any]:
    if method == "GET" and uid:
        if uid not in state.datasources:
            raise Answer(404, {"message": "Data source not found"})
        return 200, state.datasources[uid]
    if method == "POST" and uid is None:
        _missing(body, "name", "type", "access")
        if any(d["name"] == body["name"] for d in state.datasources.values()):
            raise Answer(409, {"message": "data source with the same name already exists"})
        ds = {"id": state.new_id(), "orgId": 1, "version": 1, "readOnly": False, **body}
        state.datasources[ds["uid"]] = ds
        return 200, {
            "datasource": ds,
            "id": ds["id"],
            "message": "Datasource added",
            "name": ds["name"],
        }
    if method == "PUT" and uid in state.datasources:
        _missing(body, "name", "type", "access")
        ds = state.datasources[uid]
        ds.update(body, version=ds["version"] + 1)
        return 200, {
            "datasource": ds,
            "id": ds["id"],
            "message": "Datasource updated",
            "name": ds["name"],
        }
    raise Answer(404 if uid else 405, {"message": "Data source not found"})


def _dashboards(state: State, method: str, uid: str | None, body: Any) -> tuple[int, Any]:
    if method == "GET" and uid:
        if uid not in state.dashboards:
            raise Answer(404, {"message": "Dashboard not found"})
        return 200, state.dashboards[uid]
    if method == "POST" and uid is None:
        _missing(body, "dashboard")
        d = body["dashboard"]
        _missing(d, "title", "uid")
        folder = body.get("folderUid")
        if folder is not None and folder not in state.folders:
            raise Answer(400, {"message": "folder not found"})
        old = state.dashboards.get(d["uid"])
        if old is not None and not body.get("overwrite"):
            raise Answer(
                412,
                {
                    "message": "A dashboard with the same uid already exists",
                    "status": "name-exists",
                },
            )
        version = 1 if old is None else old["dashboard"]["version"] + 1
        did = state.new_id() if old is None else old["dashboard"]["id"]
        stored = {**d, "id": did, "version": version}
        state.dashboards[d["uid"]] = {
            "dashboard": stored,
            "meta": {
                "folderUid": folder or "",
                "slug": d["title"].lower().replace(" ", "-"),
                "version": version,
            },
        }
        slug = state.dashboards[d["uid"]]["meta"]["slug"]
        return 200, {
            "id": did,
            "uid": d["uid"],
            "url": f"/d/{d['uid']}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
        }
    raise Answer(405, {"message": "method not allowed"})


def _rules(state: State, method: str, uid: str | None, body: Any) -> tuple[int, Any]:
    if method == "GET" and uid:
        if uid not in state.rules:
            raise Answer(404, None)  # Grafana answers an empty 404 for an unknown rule
        return 200, state.rules[uid]
    if method in ("POST", "PUT"):
        _missing(body, *RULE_REQUIRED)
        if body["folderUID"] not in state.folders:
            raise Answer(400, {"message": "invalid alert rule: folder does not exist"})
        if body["condition"] not in [q.get("refId") for q in body["data"]]:
            raise Answer(400, {"message": "invalid alert rule: condition is not a query"})
    if method == "POST" and uid is None:
        ruid = body.get("uid") or f"r{state.next_id}"
        if ruid in state.rules:
            raise Answer(409, {"message": "a rule with the same uid already exists"})
        rule = {
            **body,
            "uid": ruid,
            "id": state.new_id(),
            "orgID": 1,
            "provenance": "api",
            "updated": "2026-01-01T00:00:00Z",
        }
        state.rules[ruid] = rule
        return 201, rule
    if method == "PUT" and uid in state.rules:
        rule = {**state.rules[uid], **body, "uid": uid}
        state.rules[uid] = rule
        return 200, rule
    raise Answer(404, None)


class GrafanaStandIn:
    """``with GrafanaStandIn("token") as g:`` a server on a free loopback port, ``g.url``."""

    def __init__(self, token: str) -> None:
        self.state = State(token)
        lock = threading.Lock()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                path = self.path.split("?")[0]
                with lock:
                    state.requests.append(Request(self.command, path, body))
                    try:
                        if self.headers.get("Authorization") != f"Bearer {state.token}":
                            raise Answer(401, {"message": "Unauthorized"})
                        status, answer = route(state, self.command, path, body)
                    except Answer as a:
                        status, answer = a.status, a.body
                out = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GrafanaStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request so far, then forgets them."""
        out = [(r.method, r.path) for r in self.state.requests]
        self.state.requests.clear()
        return out
