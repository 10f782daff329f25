"""Builders of Grafana's JSON model (dashboard schema 39, Grafana 11): panels, InfluxQL
targets, template variables, alert rules. Pure: they return plain dicts, as Grafana stores
them, so the generated files are what a provisioned Grafana loads byte for byte.

Every query is raw InfluxQL (``rawQuery``) against the one datasource, so the query text in
the file is the query that runs, once Grafana has substituted its macros and variables
(dashboards.macros does it the same way, for the tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

JSON = dict[str, Any]
SCHEMA_VERSION = 39
DATASOURCE_UID = "coldtrace-influxdb"
DATASOURCE_TYPE = "influxdb"
FOLDER_UID = "coldtrace"
FOLDER_TITLE = "coldtrace"
# Grafana's server-side expressions (reduce, threshold) in alert rules.
EXPRESSION_UID = "__expr__"

Format = Literal["time_series", "table"]


def datasource() -> JSON:
    """The reference every panel, target and variable uses."""
    return {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}


def target(ref: str, query: str, fmt: Format = "time_series", alias: str = "") -> JSON:
    """One InfluxQL query of a panel (``refId`` ``ref``); ``alias`` names its series."""
    out: JSON = {
        "datasource": datasource(),
        "refId": ref,
        "rawQuery": True,
        "query": query,
        "resultFormat": fmt,
    }
    if alias:
        out["alias"] = alias
    return out


def panel(
    kind: str,
    title: str,
    targets: list[JSON],
    grid: tuple[int, int, int, int],
    *,
    description: str = "",
    unit: str = "",
    thresholds: Sequence[tuple[float | None, str]] | None = None,
    options: JSON | None = None,
    overrides: list[JSON] | None = None,
    transformations: list[JSON] | None = None,
    max_points: int = 500,
    custom: JSON | None = None,
) -> JSON:
    """A panel of type ``kind`` at ``grid`` = (x, y, w, h) in grid units (24 across). Ids
    are given by :func:`dashboard`. ``thresholds``: (from value, colour) steps, the first
    from None (base). ``max_points`` fixes Grafana's maxDataPoints, so ``$__interval`` is
    the same for every screen (range / max_points, rounded as Grafana rounds it)."""
    x, y, w, h = grid
    defaults: JSON = {}
    if unit:
        defaults["unit"] = unit
    if thresholds is not None:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": c, "value": v} for v, c in thresholds],
        }
    if custom is not None:
        defaults["custom"] = custom
    out: JSON = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource(),
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "maxDataPoints": max_points,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        out["transformations"] = transformations
    return out


def override(field: str, **properties: Any) -> JSON:
    """Field properties (``custom.lineStyle`` ...) of the series or column named ``field``."""
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in properties.items()],
    }


def query_variable(name: str, label: str, query: str, multi: bool = True) -> JSON:
    """A variable whose values come from InfluxDB (SHOW TAG VALUES ...); ``multi``: several
    values and All (then ``$name`` becomes a regex group, used as ``=~ /^$name$/``)."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": datasource(),
        "query": query,
        "refresh": 2,  # on time range change
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "sort": 1,
        "hide": 0,
    }


def text_variable(name: str, label: str, default: str) -> JSON:
    """A free-text variable (set by a link's ``var-<name>=...``)."""
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "query": default,
        "current": {"text": default, "value": default},
        "options": [{"selected": True, "text": default, "value": default}],
        "hide": 0,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[JSON],
    *,
    variables: list[JSON] | None = None,
    annotations: list[JSON] | None = None,
    time_from: str = "now-6h",
    refresh: str = "1m",
) -> JSON:
    """A dashboard; its panels numbered 1.. in the order given (ids unique and stable)."""
    numbered = [{"id": i, **p} for i, p in enumerate(panels, start=1)]
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["coldtrace"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": time_from, "to": "now"},
        "refresh": refresh,
        "templating": {"list": variables or []},
        "annotations": {"list": annotations or []},
        "links": [],
        "panels": numbered,
    }


def annotation(name: str, query: str, text: str, tags: str, colour: str) -> JSON:
    """Events from an InfluxQL query: ``text`` and ``tags`` name its columns (comma-separated
    for tags); the target as Grafana's InfluxDB datasource stores an annotation query."""
    return {
        "name": name,
        "datasource": datasource(),
        "enable": True,
        "hide": False,
        "iconColor": colour,
        "target": {
            "refId": "Anno",
            "rawQuery": True,
            "query": query,
            "fromAnnotations": True,
            "textColumn": text,
            "tagsColumn": tags,
        },
    }


def alert_rule(
    uid: str,
    title: str,
    query: str,
    *,
    above: float,
    window_s: int,
    pending: str,
    severity: str,
    summary: str,
    description: str,
    no_data: str = "OK",
) -> JSON:
    """A Grafana-managed alert rule (provisioning file format): query A over the last
    ``window_s`` seconds, B its last value per series, firing while B > ``above`` for
    ``pending``. No data is ``no_data`` (OK: nothing to report; Alerting: the silence is
    the news); an error is an alert (a broken query must be heard)."""
    return {
        "uid": uid,
        "title": title,
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": window_s, "to": 0},
                "datasourceUid": DATASOURCE_UID,
                "model": {
                    "refId": "A",
                    "rawQuery": True,
                    "query": query,
                    "resultFormat": "time_series",
                    "intervalMs": 1000,
                    "maxDataPoints": 43200,
                },
            },
            {
                "refId": "B",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": EXPRESSION_UID,
                "model": {
                    "refId": "B",
                    "type": "reduce",
                    "expression": "A",
                    "reducer": "last",
                    "settings": {"mode": "dropNN"},
                },
            },
            {
                "refId": "C",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": EXPRESSION_UID,
                "model": {
                    "refId": "C",
                    "type": "threshold",
                    "expression": "B",
                    "conditions": [{"evaluator": {"type": "gt", "params": [above]}}],
                },
            },
        ],
        "noDataState": no_data,
        "execErrState": "Error",
        "for": pending,
        "labels": {"severity": severity, "team": "quality"},
        "annotations": {"summary": summary, "description": description},
        "isPaused": False,
    }
