"""What Grafana sends InfluxDB for a raw InfluxQL query: its template variables and macros
substituted as Grafana 11 does, so the tests run the very query a panel runs. Pure.

Two steps, as in Grafana. The browser (InfluxDB datasource, ``interpolateQueryExpr``)
replaces ``$name`` and ``${name}`` of the dashboard's variables: a single-valued variable's
value is regex-escaped unless it is a number; a multi-valued one (or All) becomes
``(v1|v2)`` of values escaped for an InfluxQL regex. The server (pkg/tsdb/influxdb
``Query.Build``) then replaces ``$timeFilter`` with ``time >= <from>ms and time <= <to>ms``
and ``$interval``, ``$__interval_ms``, ``$__interval`` with the query's interval: the time
range divided by the panel's maxDataPoints, rounded as Grafana rounds intervals, never
below the datasource's minimum interval."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Grafana's rangeutil roundInterval: (upper bound ms, interval ms), first match wins.
_ROUND = [
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500),
    (1_500, 1_000), (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000),
    (25_000, 20_000), (45_000, 30_000), (90_000, 60_000), (210_000, 120_000),
    (450_000, 300_000), (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000),
    (2_700_000, 1_800_000), (5_400_000, 3_600_000), (9_000_000, 7_200_000),
    (16_200_000, 10_800_000), (24_300_000, 21_600_000), (64_800_000, 43_200_000),
    (129_600_000, 86_400_000), (604_800_000, 86_400_000), (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
]  # fmt: skip
_YEAR_MS = 31_536_000_000
_UNITS = [(_YEAR_MS, "y"), (86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s")]
# $name, ${name} and ${name:format} (Grafana's variable syntax; [[name]] is deprecated).
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::[^}]+)?\}")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_INFLUX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def round_interval(ms: float) -> int:
    """Grafana's rounding of an interval (ms) to a readable one (ms)."""
    for bound, interval in _ROUND:
        if ms <= bound:
            return interval
    return _YEAR_MS


def format_interval(ms: int) -> str:
    """An interval (ms) as Grafana writes it into a query (gtime.FormatInterval): 1m, 30s."""
    for size, unit in _UNITS:
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{max(ms, 1)}ms"


def parse_interval(text: str) -> int:
    """``10s``, ``1m``, ``500ms`` -> ms (the datasource's minimum interval)."""
    found = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if found is None:
        raise ValueError(f"not an interval: {text!r}")
    size = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[found[2]]
    return int(found[1]) * size


def query_interval(from_ms: int, to_ms: int, max_points: int, min_interval_ms: int) -> int:
    """The interval (ms) of a panel's query over [from_ms, to_ms]."""
    return max(round_interval((to_ms - from_ms) / max_points), min_interval_ms)


def _escape_single(value: str) -> str:
    try:
        float(value)
    except ValueError:
        return _REGEX_SPECIAL.sub(lambda m: "\\" + m[0], value)
    return value


def _escape_multi(value: str) -> str:
    return _INFLUX_SPECIAL.sub(lambda m: "\\\\" + m[0], value.replace("\\", "\\\\\\\\"))


@dataclass(frozen=True)
class Variable:
    """A dashboard variable's current value(s); ``multi``: it is multi-valued or has All."""

    name: str
    values: Sequence[str]
    multi: bool


def interpolate(query: str, variables: Mapping[str, Variable]) -> str:
    """The browser's step: the dashboard variables substituted; anything else (macros,
    unknown names) left as written."""

    def value(m: re.Match[str]) -> str:
        var = variables.get(m[1] or m[2])
        if var is None:
            return m[0]
        if not var.multi:
            return _escape_single(var.values[0])
        escaped = [_escape_multi(v) for v in var.values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    return _VARIABLE.sub(value, query)


def expand_macros(query: str, from_ms: int, to_ms: int, interval_ms: int) -> str:
    """The server's step: $timeFilter and the interval macros."""
    text = format_interval(interval_ms)
    return (
        query.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
        .replace("$interval", text)
        .replace("$__interval_ms", str(interval_ms))
        .replace("$__interval", text)
    )


def render(
    query: str,
    variables: Mapping[str, Variable],
    from_ms: int,
    to_ms: int,
    interval_ms: int,
) -> str:
    """The query InfluxDB receives."""
    return expand_macros(interpolate(query, variables), from_ms, to_ms, interval_ms)
