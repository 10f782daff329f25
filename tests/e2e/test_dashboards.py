"""Every query of the Grafana dashboards and alert rules (dashboards/grafana/) run against the
real InfluxDB, loaded by the real pipeline with two ground-truth scenarios (a compressor
failure: breaches, one left open and critical; a door left open) and three malformed
payloads, with Grafana's macros and variables substituted as Grafana substitutes them
(dashboards.macros). Each query must return exactly the series and columns its panel or rule
shows, worked out from the scenarios and the certificates the API issued; a broken query
fails with InfluxDB's own parse error. Grafana itself cannot run here: this is what can be
proven of the dashboards without it."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from coldtrace.contract import telemetry_topic
from coldtrace.db import upgrade
from coldtrace.devtools.api_process import ApiProcess
from coldtrace.devtools.services import device_password
from coldtrace.influx import InfluxClient, InfluxRejected
from coldtrace.profiles import load_profiles
from coldtrace.settings import Settings
from dashboards import definitions
from dashboards.files import MIN_INTERVAL, ROOT
from dashboards.macros import parse_interval, query_interval
from dashboards.queries import Query, dashboard_queries, rule_queries
from simulators import scenario
from simulators.model import VanRun
from simulators.runner import Runner
from tests.conftest import Devices, discard_ingest_session, ingest_process, wait_for
from tests.e2e.test_delivery_trace import cli_env

SCENARIOS = ("compressor-failure", "door-left-open")
CLOSE_GRACE_S = 3600
MALFORMED = 3
HOUR_MS = 3_600_000
GRAFANA = "http://grafana.test:3000"
Series = list[dict[str, Any]]


@dataclass
class Loaded:
    placed: dict[str, scenario.Placed]
    influx: InfluxClient
    certificates: dict[str, dict[str, Any]]  # delivery ref -> current certificate body
    links: dict[str, str]  # delivery ref -> the API's link to its Delivery dashboard
    open_now: list[dict[str, Any]]  # the API's open breaches (the store's, as they stand)
    from_ms: int
    to_ms: int

    def device(self, name: str) -> str:
        sc = self.placed[name]
        return sc.device(next(iter(sc.runs)))

    def run(self, name: str) -> VanRun:
        return next(iter(self.placed[name].runs.values()))


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


@pytest.fixture(scope="module")
def loaded(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """The scenarios through ingest and the API into a database of this module's own."""
    workdir: Path = tmp_path_factory.mktemp("dashboards")
    store = f"sqlite:///{workdir / 'store.db'}"
    upgrade(store)
    database = "dash_" + uuid.uuid4().hex[:8]
    run = "d" + uuid.uuid4().hex[:6]
    now_ms = int(time.time() * 1000)
    placed = {
        name: scenario.place(
            scenario.load(name), f"{run}{i}", load_profiles(), now_ms, CLOSE_GRACE_S * 1000
        )
        for i, name in enumerate(SCENARIOS)
    }
    alerts = scenario.ingest_settings(list(placed.values()), now_ms)
    own = {"COLDTRACE_INFLUX_DATABASE": database, "COLDTRACE_INGEST_HEARTBEAT_S": "1"}
    discard_ingest_session(settings)
    ingest = ingest_process(settings, workdir, COLDTRACE_DATABASE_URL=store, **alerts, **own)
    ingest.start()
    api_env = {
        **cli_env(settings, store),
        **alerts,
        **own,
        "COLDTRACE_CLOSE_GRACE_S": str(CLOSE_GRACE_S),
        "COLDTRACE_GRAFANA_URL": GRAFANA,
    }
    api = ApiProcess(api_env, workdir / "api.log").start()
    mine = settings.model_copy(
        update={"ingest_health_port": ingest.health_port, "influx_database": database}
    )
    runner = Runner(mine, api.base, api.key, lambda d: device_password(settings, d))
    influx = InfluxClient(mine)
    devices = Devices(mine)
    try:
        for p in placed.values():
            report = runner.run(p)
            assert not report.mismatches, [c for c in report.checks if c.result != "ok"]
        door_van = placed["door-left-open"].device("van-b")
        devices.publish(door_van, [b"not json"] * MALFORMED, telemetry_topic(door_van))
        wait_for(
            lambda: (
                influx.rows('SELECT count("payload_bytes") FROM "rejected"')
                == [{"time": 0, "count": MALFORMED}]
            ),
            what="the malformed payloads dead-lettered",
        )
        # one more delivery, for the door van's chiller, on its way now
        door_run = placed["door-left-open"]
        stop = door_run.runs["van-b"].route.stops[0].place
        place = {"address": stop.name, "lat": stop.lat, "lon": stop.lon}
        now = datetime.now(UTC)
        extra = runner.call(
            "POST",
            "/deliveries",
            {
                "reference": f"{door_run.prefix}-DO-2",
                "customer_id": f"{door_run.prefix}-etoile",
                "vehicle_id": door_van,
                "compartment": "chiller",
                "pickup": place,
                "dropoff": place,
                "planned_start": now.isoformat(),
                "planned_end": (now + timedelta(hours=1)).isoformat(),
            },
        )
        runner.call("POST", f"/deliveries/{extra['id']}/transitions", {"action": "start"})
        # a heartbeat of ingest's after everything above was stored
        stored = time.time_ns()
        wait_for(
            lambda: influx.rows(f'SELECT last("up") FROM "ingest" WHERE time > {stored}'),
            what="a heartbeat of ingest's",
        )
        certificates, links = {}, {}
        for p in placed.values():
            for d in p.deliveries:
                ref = f"{p.prefix}-{d.spec.ref}"
                found = runner.call("GET", "/deliveries", reference=ref)["items"][0]
                current = runner.call("GET", f"/deliveries/{found['id']}/certificates")[0]
                certificates[d.spec.ref] = current["body"]
                links[d.spec.ref] = runner.call("GET", f"/deliveries/{found['id']}")[
                    "dashboard_url"
                ]
        open_now = runner.call("GET", "/breaches", state="open")["items"]
        start = min(p.epoch_ms for p in placed.values())
        now = int(time.time() * 1000)
        yield Loaded(placed, influx, certificates, links, open_now, start - HOUR_MS, now)
    finally:
        devices.close()
        influx.close()
        runner.close()
        api.stop()
        ingest.stop()


def run(influx: InfluxClient, q: Query) -> Series:
    """The query's series; a query InfluxDB refuses fails naming the panel and its error."""
    try:
        return influx.query(q.text)
    except InfluxRejected as exc:
        raise AssertionError(
            f"{q.source} / {q.title} {q.ref}: InfluxDB refused it: {exc}"
        ) from None


def flat(series: Series) -> list[dict[str, Any]]:
    return [
        {**dict(zip(s["columns"], v, strict=True)), **s.get("tags", {})}
        for s in series
        for v in s["values"]
    ]


def columns(series: Series) -> set[tuple[str, ...]]:
    return {tuple(s["columns"]) for s in series}


def sent(van: VanRun) -> list[dict[str, Any]]:
    """The readings as the van's box sent them (values rounded as on the wire), by seq."""
    readings = {r["seq"]: r for m in van.messages for r in json.loads(m.payload)["readings"]}
    return [readings[seq] for seq in sorted(readings)]


def buckets(points: list[tuple[int, float]], interval: int) -> dict[int, float]:
    """InfluxDB's GROUP BY time(interval) mean, from the points themselves."""
    groups: dict[int, list[float]] = defaultdict(list)
    for t, v in points:
        groups[t - t % interval].append(v)
    return {t: sum(vs) / len(vs) for t, vs in groups.items()}


def by_tag(series: Series, tag: str) -> dict[str, float]:
    """Sum of each series' values (column 1), by the series' tag."""
    return {s["tags"][tag]: sum(v[1] for v in s["values"]) for s in series}


Check = Callable[[Series], None]


def expectations(x: Loaded) -> dict[tuple[str, str, str], Check]:
    """What each panel, variable, annotation and rule query must return."""
    van_a, van_b = x.device("compressor-failure"), x.device("door-left-open")
    run_a, run_b = x.run("compressor-failure"), x.run("door-left-open")
    certs = x.certificates
    ch1 = certs["CH-1"]
    ch1_from, ch1_to = ms(ch1["start"]), ms(ch1["end"])
    # The panel's $__interval over CH-1's window: 500 points, the datasource's minimum.
    interval_ch1 = query_interval(ch1_from, ch1_to, 500, parse_interval(MIN_INTERVAL))
    wire = {van.device: sent(van) for van in (run_a, run_b)}
    last = {
        (device, probe): value
        for device, readings in wire.items()
        for r in readings
        for probe, value in r["probes"].items()
        if value is not None
    }
    in_ch1 = [r for r in wire[van_a] if ch1_from <= r["ts"] <= ch1_to]
    product = buckets(
        [(r["ts"], v) for r in in_ch1 if (v := r["probes"]["product"]) is not None], interval_ch1
    )
    fixes = {
        device: [
            (r["ts"], r["gps"]["lat"], r["gps"]["lon"], r["gps"]["speed_kmh"])
            for r in rs
            if "gps" in r
        ]
        for device, rs in wire.items()
    }

    def fleet_positions(s: Series) -> None:
        assert columns(s) == {("time", "lat", "lon", "speed_kmh")}
        got = {r["device"]: (r["lat"], r["lon"], r["speed_kmh"]) for r in flat(s)}
        assert got == {device: f[-1][1:] for device, f in fixes.items()}

    def open_per_device(expected: dict[str, int]) -> Check:
        def check(s: Series) -> None:
            assert columns(s) <= {("time", "open")}
            assert {r["device"]: r["open"] for r in flat(s)} == expected

        return check

    def current(s: Series) -> None:
        assert columns(s) == {("time", "celsius")}
        got = {(r["device"], r["probe"]): r["celsius"] for r in flat(s)}
        assert got == pytest.approx(last)

    def open_breaches(s: Series) -> None:
        figures = ("severity", "peak", "degree_minutes", "duration_min", "limit_c")
        assert columns(s) == {("time", *figures, "start")}
        got = [(r["device"], r["probe"], r["rule"], *(r[f] for f in figures)) for r in flat(s)]
        # as the store holds it now (the API), not as it opened or escalated
        assert got == [
            (b["device"], b["probe"], b["rule"], *(b[f] for f in figures)) for b in x.open_now
        ]
        assert [(b["device"], b["probe"], b["rule"], b["severity"]) for b in x.open_now] == [
            (van_a, "product", "excursion_high", "critical")
        ]
        assert [r["start"] for r in flat(s)] == [ms(b["start"]) for b in x.open_now]

    def in_transit(s: Series) -> None:
        got = {(r["vehicle"], r["compartment"]): r["in_transit"] for r in flat(s)}
        # every scenario delivery started and was handed over; DO-2 is on its way
        assert got == {(van_a, "chiller"): 0, (van_a, "freezer"): 0, (van_b, "chiller"): 1}

    def nothing(s: Series) -> None:
        assert s == []

    def temperature(s: Series) -> None:
        assert [(x["tags"], x["columns"]) for x in s] == [
            ({"device": van_a, "probe": "product"}, ["time", "mean"])
        ]
        got = {t: v for t, v in s[0]["values"] if v is not None}
        assert got == pytest.approx(product)

    def limit(name: str, value: float) -> Check:
        def check(s: Series) -> None:
            assert columns(s) == {("time", name)}
            got = {t: v for t, v in s[0]["values"]}
            assert got == dict.fromkeys(product, value)

        return check

    def door(s: Series) -> None:
        assert [(x["tags"], x["columns"]) for x in s] == [({"device": van_a}, ["time", "door"])]
        assert [tuple(v) for v in s[0]["values"]] == [(r["ts"], r["door"]) for r in in_ch1]

    def route(s: Series) -> None:
        assert columns(s) == {("time", "lat", "lon", "speed_kmh")}
        assert [tuple(v) for v in s[0]["values"]] == [
            f for f in fixes[van_a] if ch1_from <= f[0] <= ch1_to
        ]

    def certificate(s: Series) -> None:
        assert flat(s) == [
            {
                "time": ch1_to,
                "reference": ch1["reference"],
                "verdict": "not_compliant",
                "version": ch1["version"],
                "mkt_c": pytest.approx(ch1["mkt_c"]),
                "out_of_range_min": pytest.approx(ch1["out_of_range_min"]),
                "breaches": len(ch1["breaches"]),
            }
        ]

    def ch1_breaches(s: Series) -> None:
        got = {(r["device"], r["probe"], r["rule"], r["transition"]) for r in flat(s)}
        # Open at the hand-over: the stage closes it at the stretch's end, 1 ms after it.
        assert got == {(van_a, "product", "excursion_high", "opened")}

    def ch1_annotations(s: Series) -> None:
        got = {(r["rule"], r["probe"], r["transition"], r["severity"]) for r in flat(s)}
        assert got == {("excursion_high", "product", "opened", "major")}

    def values_of(expected: set[str]) -> Check:
        def check(s: Series) -> None:
            assert {r["value"] for r in flat(s)} == expected

        return check

    def verdicts(expected: dict[str, int]) -> Check:
        def check(s: Series) -> None:
            assert by_tag(s, "customer") == expected

        return check

    def per_rule(s: Series) -> None:
        got = {(r["rule"], r["probe"]): r["breaches"] for r in flat(s)}
        assert got == {("excursion_high", "product"): 2, ("door_open", ""): 1}

    def out_of_range(s: Series) -> None:
        want = {
            van_a: certs["CH-1"]["out_of_range_min"] + certs["FR-1"]["out_of_range_min"],
            van_b: certs["DO-1"]["out_of_range_min"],
        }
        assert by_tag(s, "vehicle") == pytest.approx(want)

    def mkt(s: Series) -> None:
        got = {r["reference"]: (r["verdict"], r["mkt_c"]) for r in flat(s)}
        assert got == {
            c["reference"]: (c["verdict"], pytest.approx(c["mkt_c"])) for c in certs.values()
        }

    def per_device(column: str) -> Check:
        def check(s: Series) -> None:
            assert [(x["tags"]["device"], x["columns"]) for x in s] == [
                (d, ["time", "mean"]) for d in sorted((van_a, van_b))
            ]
            for x in s:
                assert any(v[1] is not None for v in x["values"]), f"no {column}"

        return check

    def last_seen(s: Series) -> None:
        got = {r["device"]: (r["time"], r["seq"]) for r in flat(s)}
        assert got == {device: (rs[-1]["ts"], rs[-1]["seq"]) for device, rs in wire.items()}

    def rejected(s: Series) -> None:
        assert by_tag(s, "reason") == {"malformed_json": MALFORMED}

    def rate(s: Series) -> None:
        assert columns(s) == {("time", "count")}
        assert sum(v[1] for v in s[0]["values"]) == sum(len(rs) for rs in wire.values())

    def lag(s: Series) -> None:
        assert [(x["tags"], x["columns"]) for x in s] == [({"instance": "ingest"}, ["time", "max"])]
        lags = [v[1] for v in s[0]["values"] if v[1] is not None]
        assert lags and all(0 <= v < definitions.LAG_THRESHOLD_MS for v in lags)

    def health(s: Series) -> None:
        assert [
            {k: r[k] for k in ("instance", "up", "rules_ok", "quarantined")} for r in flat(s)
        ] == [{"instance": "ingest", "up": True, "rules_ok": True, "quarantined": 0}]

    def lag_rule(s: Series) -> None:
        assert [(x["tags"], x["columns"]) for x in s] == [
            ({"instance": "ingest"}, ["time", "lag_ms"])
        ]
        assert 0 <= s[0]["values"][0][1] < definitions.LAG_THRESHOLD_MS

    def rejects_rule(s: Series) -> None:
        assert flat(s) == [{"time": pytest.approx(x.to_ms, abs=3600_000), "rejected": MALFORMED}]

    fleet, delivery = definitions.FLEET_UID, definitions.DELIVERY_UID
    compliance, devices = definitions.COMPLIANCE_UID, definitions.DEVICES_UID
    return {
        (fleet, "Vehicles: last position, red with an open breach", "A"): fleet_positions,
        (fleet, "Vehicles: last position, red with an open breach", "B"): open_per_device(
            {van_a: 1}
        ),
        (fleet, "Current temperature per probe", "A"): current,
        (fleet, "Open breaches", "A"): open_breaches,
        (fleet, "Silent devices on a delivery", "A"): nothing,
        (fleet, "Deliveries in transit", "A"): in_transit,
        (delivery, "Temperature per probe against the profile limits", "A"): temperature,
        (delivery, "Temperature per probe against the profile limits", "B"): limit(
            "high limit", 4.0
        ),
        (delivery, "Temperature per probe against the profile limits", "C"): limit(
            "low limit", 0.0
        ),
        (delivery, "Door", "A"): door,
        (delivery, "Route", "A"): route,
        (delivery, "Certificate", "A"): certificate,
        (delivery, "Breaches", "A"): ch1_breaches,
        (delivery, "variable device", ""): values_of({van_a, van_b}),
        (delivery, "variable probe", ""): values_of(set(run_a.readings[0].probes)),
        (delivery, "annotation Breaches", ""): ch1_annotations,
        (compliance, "Deliveries per verdict per customer and week", "A"): verdicts(
            {certs["FR-1"]["customer_id"]: 1}
        ),
        (compliance, "Deliveries per verdict per customer and week", "B"): verdicts(
            {certs["CH-1"]["customer_id"]: 1, certs["DO-1"]["customer_id"]: 1}
        ),
        (compliance, "Deliveries per verdict per customer and week", "C"): nothing,
        (compliance, "Breaches by rule and cause", "A"): per_rule,
        (compliance, "Time out of range per vehicle", "A"): out_of_range,
        (compliance, "MKT per delivery", "A"): mkt,
        (devices, "Battery", "A"): per_device("battery_v"),
        (devices, "RSSI", "A"): per_device("rssi_dbm"),
        (devices, "Last seen", "A"): last_seen,
        (devices, "Sequence gaps", "A"): nothing,
        (devices, "Rejected payloads by reason", "A"): rejected,
        (devices, "Ingest rate", "A"): rate,
        (devices, "Ingest lag", "A"): lag,
        (devices, "Ingest and rules stage health", "A"): health,
        (devices, "variable device", ""): values_of({van_a, van_b}),
        ("alerting", "Open critical breach", "A"): open_per_device({van_a: 1}),
        ("alerting", "Silent device on a delivery", "A"): nothing,
        ("alerting", "Ingest lag over a minute", "A"): lag_rule,
        ("alerting", "Rejected payloads rising", "A"): rejects_rule,
    }


def opened(link: str) -> tuple[dict[str, list[str]], int, int]:
    """The variables and time range a link opens its dashboard with."""
    query = parse_qs(urlsplit(link).query)
    variables = {k.removeprefix("var-"): v for k, v in query.items() if k.startswith("var-")}
    return variables, int(query["from"][0]), int(query["to"][0])


def all_queries(x: Loaded, dashboards: list[dict[str, Any]]) -> list[Query]:
    """Each dashboard as a quality manager opens it: the Delivery one from the API's link of
    CH-1, the Devices one with All devices."""
    chosen = {
        definitions.DELIVERY_UID: opened(x.links["CH-1"]),
        definitions.DEVICES_UID: (
            {"device": sorted(x.device(n) for n in SCENARIOS)},
            x.from_ms,
            x.to_ms,
        ),
    }
    out = []
    for d in dashboards:
        values, start, end = chosen.get(d["uid"], ({}, x.from_ms, x.to_ms))
        out.extend(dashboard_queries(d, values, start, end))
    out.extend(rule_queries(definitions.alert_rules(), x.to_ms))
    return out


def test_the_apis_link_opens_the_delivery_dashboard_on_the_delivery(loaded: Loaded) -> None:
    ch1 = loaded.certificates["CH-1"]
    link = loaded.links["CH-1"]
    assert link.startswith(f"{GRAFANA}/d/{definitions.DELIVERY_UID}/delivery?")
    assert opened(link) == (
        {
            "vehicle": [ch1["vehicle_id"]],
            "compartment": ["chiller"],
            "device": [loaded.device("compressor-failure")],
            "probe": ["product"],  # the cabin probe measures no compartment
            "low_c": ["0"],  # chilled: 0..4 C
            "high_c": ["4"],
        },
        ms(ch1["start"]),
        ms(ch1["end"]),
    )


def shipped() -> list[dict[str, Any]]:
    """The dashboards as Grafana loads them: the generated files."""
    return [json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("*.json"))]


def test_every_panel_variable_annotation_and_rule_query_returns_what_it_shows(
    loaded: Loaded,
) -> None:
    expected = expectations(loaded)
    queries = all_queries(loaded, shipped())
    assert {q.key for q in queries} == set(expected), "a query without an expectation"
    failed = []
    for q in queries:
        try:
            expected[q.key](run(loaded.influx, q))
        except AssertionError as exc:
            failed.append(f"{' / '.join(q.key)}: {exc}\n  {q.text}")
    assert not failed, "\n".join(failed)


def test_a_broken_query_fails_with_influxdbs_parse_error(loaded: Loaded) -> None:
    dashboards = copy.deepcopy(shipped())
    delivery = next(d for d in dashboards if d["uid"] == definitions.DELIVERY_UID)
    target = delivery["panels"][0]["targets"][0]
    target["query"] = target["query"].replace('mean("celsius")', 'mean("celsius"')
    broken = next(q for q in all_queries(loaded, [delivery]) if q.ref == "A")
    with pytest.raises(AssertionError, match=r"Temperature per probe.*error parsing query"):
        run(loaded.influx, broken)
