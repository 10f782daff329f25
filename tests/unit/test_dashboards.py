"""The dashboards' JSON against Grafana's own types (grafana-foundation-sdk) and the checks
Grafana would only show as broken panels; the generated files are current; Grafana's macro
and variable substitution (dashboards.macros)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import checks, definitions, files
from dashboards.links import delivery_dashboard_url
from dashboards.macros import Variable, expand_macros, format_interval, interpolate, round_interval

SHIPPED = {p.stem: json.loads(p.read_text()) for p in (files.ROOT / "dashboards").glob("*.json")}


def test_the_generated_files_are_what_the_definitions_render() -> None:
    assert files.stale() == [], "run python -m dashboards"


def test_uids_are_present_and_stable() -> None:
    # Links (the API's delivery link), bookmarks and provisioning name these: never change one.
    assert {name: d["uid"] for name, d in SHIPPED.items()} == {
        "fleet": "coldtrace-fleet",
        "delivery": "coldtrace-delivery",
        "compliance": "coldtrace-compliance",
        "devices": "coldtrace-devices",
    }
    assert [r["uid"] for r in definitions.alert_rules()] == [
        "coldtrace-open-critical-breach",
        "coldtrace-silent-device",
        "coldtrace-ingest-lag",
        "coldtrace-rejects-rising",
    ]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_dashboards_pass_the_checks(name: str) -> None:
    assert checks.problems(SHIPPED[name]) == []


def test_the_alert_rules_pass_the_checks() -> None:
    for rule in definitions.alert_rules():
        assert checks.rule_problems(rule) == []


def _keys_lost(mine: Any, theirs: Any, where: str = "") -> list[str]:
    if isinstance(mine, dict) and isinstance(theirs, dict):
        lost = [f"{where}/{k}" for k in mine if k not in theirs]
        return lost + [
            x for k in mine if k in theirs for x in _keys_lost(mine[k], theirs[k], f"{where}/{k}")
        ]
    if isinstance(mine, list) and isinstance(theirs, list):
        return [
            x
            for i, (a, b) in enumerate(zip(mine, theirs, strict=True))
            for x in _keys_lost(a, b, f"{where}[{i}]")
        ]
    return [] if mine == theirs else [f"{where}: {mine!r} became {theirs!r}"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_key_is_one_grafanas_dashboard_schema_knows(name: str) -> None:
    """Read into the SDK's Dashboard type and written back: a key the schema does not know
    is dropped, a value of the wrong type changes."""
    model = Dashboard.from_json(SHIPPED[name])
    back = json.loads(JSONEncoder().encode(model))
    # An annotation's target is the datasource's own query (the SDK types only the built-in
    # Grafana one): its InfluxQL is checked against InfluxDB (tests/e2e/test_dashboards.py).
    assert [k for k in _keys_lost(SHIPPED[name], back) if "/target/" not in k] == []


def _dashboard() -> dict[str, Any]:
    return copy.deepcopy(SHIPPED["delivery"])


def test_a_duplicate_panel_id_fails() -> None:
    d = _dashboard()
    d["panels"][1]["id"] = d["panels"][0]["id"]
    assert checks.problems(d) == [
        "coldtrace-delivery: panel id 1 used twice "
        "('Temperature per probe against the profile limits', 'Door')"
    ]


def test_an_unknown_datasource_fails() -> None:
    d = _dashboard()
    d["panels"][2]["targets"][0]["datasource"] = {"type": "influxdb", "uid": "old-influx"}
    assert checks.problems(d) == [
        "coldtrace-delivery.panels[2].targets[0].datasource: unknown datasource 'old-influx' "
        "(known: coldtrace-influxdb)"
    ]


def test_an_undefined_variable_and_a_missing_uid_fail() -> None:
    d = _dashboard()
    d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "high_c"]
    del d["uid"]
    assert checks.problems(d) == [
        "coldtrace: Delivery: no uid, or not 1-40 of A-Z a-z 0-9 _ -: None",
        "panel 1 B query: variable $high_c is not defined",
    ]


def test_a_rule_whose_condition_is_no_query_fails() -> None:
    rule = copy.deepcopy(definitions.alert_rules()[0])
    rule["condition"] = "D"
    rule["data"][0]["datasourceUid"] = "nope"
    assert checks.rule_problems(rule) == [
        "coldtrace-open-critical-breach: condition 'D' is none of ['A', 'B', 'C']",
        "coldtrace-open-critical-breach A: unknown datasource 'nope'",
    ]


@pytest.mark.parametrize(
    ("ms", "rounded", "text"),
    [(8_640, 10_000, "10s"), (43_200, 30_000, "30s"), (172_800, 120_000, "2m"),
     (1_209_600, 1_200_000, "20m"), (100_000_000, 86_400_000, "1d"), (4, 1, "1ms")],
)  # fmt: skip
def test_intervals_are_rounded_and_written_as_grafana_does(
    ms: int, rounded: int, text: str
) -> None:
    assert round_interval(ms) == rounded
    assert format_interval(rounded) == text


def test_variables_and_macros_are_substituted_as_grafana_does() -> None:
    variables = {
        "device": Variable("device", ["van.1", "van-2"], multi=True),
        "one": Variable("one", ["van-3"], multi=True),
        "vehicle": Variable("vehicle", ["v(1)"], multi=False),
        "high_c": Variable("high_c", ["4.5"], multi=False),
    }
    query = (
        "WHERE device =~ /^$device$/ AND d =~ /^${one}$/ AND v = '$vehicle' AND $high_c "
        "AND $unknown AND $timeFilter GROUP BY time($__interval) LIMIT $__interval_ms"
    )
    assert expand_macros(interpolate(query, variables), 1_000, 2_000, 60_000) == (
        "WHERE device =~ /^(van\\\\.1|van-2)$/ AND d =~ /^van-3$/ AND v = 'v\\(1\\)' AND 4.5 "
        "AND $unknown AND time >= 1000ms and time <= 2000ms GROUP BY time(1m) LIMIT 60000"
    )


def test_a_delivery_link_names_its_vehicle_compartment_probes_limits_and_window() -> None:
    url = delivery_dashboard_url(
        "https://grafana.example/",
        "van 01",
        "chiller",
        [("box-2", "product"), ("box-1", "air"), ("box-1", "product")],
        (0.0, 4.0),
        1_000,
        2_000,
    )
    assert url == (
        "https://grafana.example/d/coldtrace-delivery/delivery?orgId=1&from=1000&to=2000"
        "&var-vehicle=van+01&var-compartment=chiller&var-device=box-1&var-device=box-2"
        "&var-probe=air&var-probe=product&var-low_c=0&var-high_c=4"
    )
    # a one-sided profile: its one limit, drawn once
    one_sided = delivery_dashboard_url("http://g", "v", "c", [], (None, -18.0), 0, 1)
    assert one_sided.endswith("&var-vehicle=v&var-compartment=c&var-low_c=-18&var-high_c=-18")
