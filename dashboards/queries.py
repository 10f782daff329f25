"""Every InfluxQL query the dashboards and alert rules make, as InfluxDB receives it for a
given time range and variable values (dashboards.macros). Pure: the tests run them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dashboards.files import MIN_INTERVAL
from dashboards.grafana import DATASOURCE_UID, JSON
from dashboards.macros import Variable, parse_interval, query_interval, render


@dataclass(frozen=True)
class Query:
    """One query: where it comes from (dashboard uid or "alerting", panel/variable/rule
    title, refId) and its text as sent."""

    source: str
    title: str
    ref: str
    text: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.source, self.title, self.ref


def variables_of(d: JSON, values: Mapping[str, list[str]]) -> dict[str, Variable]:
    """The dashboard's variables with ``values`` (name -> its selected values); a variable
    not given keeps its default."""
    out = {}
    for v in d.get("templating", {}).get("list", []):
        multi = bool(v.get("multi") or v.get("includeAll"))
        chosen = values.get(v["name"], [v.get("current", {}).get("value", "")])
        out[v["name"]] = Variable(v["name"], chosen, multi)
    return out


def dashboard_queries(
    d: JSON, values: Mapping[str, list[str]], from_ms: int, to_ms: int
) -> Iterator[Query]:
    """Panel targets, then query variables, then annotations, of dashboard ``d``."""
    variables = variables_of(d, values)
    minimum = parse_interval(MIN_INTERVAL)
    for p in d.get("panels", []):
        interval = query_interval(from_ms, to_ms, p.get("maxDataPoints", 500), minimum)
        for t in p.get("targets", []):
            text = render(t["query"], variables, from_ms, to_ms, interval)
            yield Query(d["uid"], p["title"], t["refId"], text)
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            text = render(v["query"], variables, from_ms, to_ms, minimum)
            yield Query(d["uid"], f"variable {v['name']}", "", text)
    for a in d.get("annotations", {}).get("list", []):
        if "target" in a:
            text = render(a["target"]["query"], variables, from_ms, to_ms, minimum)
            yield Query(d["uid"], f"annotation {a['name']}", "", text)


def rule_queries(rules: list[JSON], now_ms: int) -> Iterator[Query]:
    """The InfluxDB queries of alert rules evaluated at ``now_ms`` (each over its own
    relative time range; intervalMs is the interval)."""
    for rule in rules:
        for q in rule["data"]:
            if q["datasourceUid"] != DATASOURCE_UID:
                continue
            window = q["relativeTimeRange"]
            from_ms = now_ms - window["from"] * 1000
            to_ms = now_ms - window["to"] * 1000
            text = render(q["model"]["query"], {}, from_ms, to_ms, q["model"]["intervalMs"])
            yield Query("alerting", rule["title"], q["refId"], text)
