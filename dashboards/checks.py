"""Checks of a dashboard's JSON that Grafana itself would only show as a broken panel: a uid,
unique panel ids, datasource references that resolve, no variable used that is not defined.
Pure; each problem is one line naming the dashboard and the place. (The keys themselves are
checked against Grafana's own types in tests/unit/test_dashboards.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from dashboards.grafana import DATASOURCE_TYPE, DATASOURCE_UID, EXPRESSION_UID, JSON

UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# Names Grafana or the InfluxDB datasource substitute themselves (not dashboard variables).
BUILTIN = re.compile(r"^(timeFilter|interval|__\w+|tag_\w+|col|m)$")
_USE = re.compile(r"\$(\w+)|\$\{(\w+)(?::[^}]+)?\}|\[\[(\w+)\]\]")
KNOWN_DATASOURCES = {DATASOURCE_UID: DATASOURCE_TYPE}


def panels(d: JSON) -> Iterator[JSON]:
    """Every panel, rows' collapsed panels included."""
    for p in d.get("panels", []):
        yield p
        yield from p.get("panels", [])


def _refs(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(place, value) of every ``datasource`` key under ``node``."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "datasource":
                yield f"{where}.datasource", v
            yield from _refs(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _refs(v, f"{where}[{i}]")


def _texts(d: JSON) -> Iterator[tuple[str, str]]:
    """(place, text) of every string Grafana interpolates: queries, aliases, titles."""
    for p in panels(d):
        yield f"panel {p.get('id')} title", p.get("title", "")
        for t in p.get("targets", []):
            for key in ("query", "alias"):
                if key in t:
                    yield f"panel {p.get('id')} {t.get('refId')} {key}", t[key]
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            yield f"variable {v['name']}", v.get("query", "")
    for a in d.get("annotations", {}).get("list", []):
        yield f"annotation {a.get('name')}", a.get("target", {}).get("query", "")


def problems(d: JSON) -> list[str]:
    """What is wrong with dashboard ``d`` (empty: nothing)."""
    name = d.get("uid") or d.get("title") or "?"
    out: list[str] = []
    if not isinstance(d.get("uid"), str) or not UID.match(d["uid"]):
        out.append(f"{name}: no uid, or not 1-40 of A-Z a-z 0-9 _ -: {d.get('uid')!r}")
    seen: dict[int, str] = {}
    for p in panels(d):
        pid = p.get("id")
        if not isinstance(pid, int):
            out.append(f"{name}: panel {p.get('title')!r} has no id")
        elif pid in seen:
            out.append(f"{name}: panel id {pid} used twice ({seen[pid]!r}, {p.get('title')!r})")
        else:
            seen[pid] = p.get("title", "")
    for where, ref in _refs(d, name):
        uid = ref.get("uid") if isinstance(ref, dict) else ref
        kind = ref.get("type") if isinstance(ref, dict) else None
        if uid not in KNOWN_DATASOURCES:
            out.append(f"{where}: unknown datasource {uid!r} (known: {DATASOURCE_UID})")
        elif kind is not None and kind != KNOWN_DATASOURCES[uid]:
            out.append(f"{where}: datasource {uid} is of type {KNOWN_DATASOURCES[uid]}, not {kind}")
    defined = {v.get("name") for v in d.get("templating", {}).get("list", [])}
    for where, text in _texts(d):
        for m in _USE.finditer(text):
            used = m[1] or m[2] or m[3]
            if used not in defined and not BUILTIN.match(used):
                out.append(f"{where}: variable ${used} is not defined")
    return out


def rule_problems(rule: JSON) -> list[str]:
    """What is wrong with an alert rule: its condition and datasources must resolve."""
    name = rule.get("uid") or rule.get("title") or "?"
    out: list[str] = []
    refs = [q.get("refId") for q in rule.get("data", [])]
    if rule.get("condition") not in refs:
        out.append(f"{name}: condition {rule.get('condition')!r} is none of {refs}")
    for q in rule.get("data", []):
        if q.get("datasourceUid") not in {*KNOWN_DATASOURCES, EXPRESSION_UID}:
            out.append(f"{name} {q.get('refId')}: unknown datasource {q.get('datasourceUid')!r}")
    if not isinstance(rule.get("uid"), str) or not UID.match(rule["uid"]):
        out.append(f"{name}: no uid, or not 1-40 of A-Z a-z 0-9 _ -")
    return out
