"""Adapter for InfluxDB's v1 HTTP API: line protocol to /write, InfluxQL to /query.

That API is served by InfluxDB 1.x, by 2.x (v1 compatibility endpoints) and by 3.x, so this
is the only client coldtrace needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import httpx
import msgpack
import orjson

from coldtrace.settings import Settings

Precision = Literal["ms", "ns"]


# InfluxDB 1.x answers queries in MessagePack when asked: for a long trace (36,000 rows) it
# encodes and we decode that about twice as fast as JSON. Servers without it answer JSON.
MSGPACK = "application/x-msgpack"


def _decode(resp: httpx.Response) -> dict[str, Any]:
    if resp.headers.get("content-type", "").startswith(MSGPACK):
        payload: dict[str, Any] = msgpack.unpackb(resp.content, raw=False, strict_map_key=False)
    else:
        payload = orjson.loads(resp.content)
    return payload


class InfluxUnavailable(Exception):
    """InfluxDB did not store the write (down, timeout, 5xx): retry later, ack nothing."""


class InfluxRejected(Exception):
    """InfluxDB refused the write itself (HTTP 4xx): retrying the same bytes cannot help."""


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


DEVICES_PER_QUERY = 100  # devices OR-ed into one query: keeps a query short to parse
# Devices read together read from the earliest `since` of their group: a group spans at most
# an hour of `since`s (after a restart a fleet's batches are minutes apart), so a device reads
# at most an hour of rows it then drops; a device with an old backlog is read in a group of
# its own instead of pulling the others' rows with it.
SINCE_SLACK_MS = 3_600_000


def device_chunks(devices: Iterable[str]) -> Iterator[str]:
    """The InfluxQL conditions that select the devices, a query-sized chunk each (one device
    OR another: `device` is a tag of most measurements, a field of `rejected`)."""
    ordered = list(devices)
    for i in range(0, len(ordered), DEVICES_PER_QUERY):
        chunk = ordered[i : i + DEVICES_PER_QUERY]
        yield "(" + " OR ".join(f"device = {quote_string(d)}" for d in chunk) + ")"


def since_groups(since_ms: Mapping[str, int]) -> Iterator[tuple[int, str]]:
    """For reading several devices' rows each from its own `since` (device ms) in a few
    queries: (the earliest `since` of a group, the condition selecting a query-sized chunk of
    it), devices grouped by SINCE_SLACK_MS."""
    groups: list[list[str]] = []
    for device in sorted(since_ms, key=lambda d: since_ms[d]):
        if groups and since_ms[device] - since_ms[groups[-1][0]] <= SINCE_SLACK_MS:
            groups[-1].append(device)
        else:
            groups.append([device])
    for group in groups:
        for where in device_chunks(group):
            yield since_ms[group[0]], where


class InfluxClient:
    def __init__(self, settings: Settings, timeout_s: float = 10.0) -> None:
        auth = None
        if settings.influx_username and settings.influx_password:
            auth = (settings.influx_username, settings.influx_password.get_secret_value())
        self.database = settings.influx_database
        self._http = httpx.Client(
            base_url=settings.influx_url.rstrip("/"), timeout=timeout_s, auth=auth
        )

    def close(self) -> None:
        self._http.close()

    def ping(self) -> bool:
        try:
            return self._http.get("/ping").status_code == 204
        except httpx.HTTPError:
            return False

    def write(self, body: bytes, precision: Precision = "ms") -> None:
        if not body:
            return
        try:
            resp = self._http.post(
                "/write", params={"db": self.database, "precision": precision}, content=body
            )
        except httpx.HTTPError as exc:
            raise InfluxUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code == 204:
            return
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            raise InfluxRejected(f"HTTP {resp.status_code}: {resp.text[:500]}")
        raise InfluxUnavailable(f"HTTP {resp.status_code}: {resp.text[:500]}")

    def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; return its series (name, tags, columns, values)."""
        try:
            resp = self._http.post(
                "/query",
                params={"db": self.database, "epoch": "ms"},
                data={"q": influxql},
                # Exactly this: influxd 1.x answers JSON to any longer Accept header.
                headers={"Accept": MSGPACK},
            )
        except httpx.HTTPError as exc:
            raise InfluxUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 500:
            raise InfluxUnavailable(f"HTTP {resp.status_code}: {resp.text[:500]}")
        payload = _decode(resp)
        if resp.status_code >= 400 or "error" in payload:
            raise InfluxRejected(f"{influxql!r}: {payload.get('error', resp.text[:500])}")
        result = payload["results"][0]
        if "error" in result:
            raise InfluxRejected(f"{influxql!r}: {result['error']}")
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def rows(self, influxql: str) -> list[dict[str, Any]]:
        """Query results flattened to one dict per row, tags merged in."""
        out: list[dict[str, Any]] = []
        for s in self.query(influxql):
            tags = s.get("tags", {})
            for values in s["values"]:
                row = dict(zip(s["columns"], values, strict=True))
                row.update(tags)
                out.append(row)
        return out

    def create_database(self) -> None:
        self.query(f"CREATE DATABASE {quote_ident(self.database)}")
