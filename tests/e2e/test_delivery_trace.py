"""A delivery from the ordering system to its trace, through every real part: the API as
`coldtrace api` (with a key from `coldtrace keys create`), the simulated van publishing over
Mosquitto, ingest with its rules stage storing readings in InfluxDB and breaches in the store,
then the delivery closed and its GeoJSON trace fetched; once with the store on SQLite, once
on PostgreSQL.

The van (simulators.fleet.Van, seed fixed) carries chilled food (0..+4 C, 15 min delay) and
reads every minute for an hour; its fridge unit fails from minute 10 to 30 (set-point +7.5 C,
then +1 C to recover), so its air probe, and later its product probe, leave the range for
longer than the delay. Each breach the rule engine
stored must appear in the trace at the place the van was when its first out-of-range reading
was taken, with the engine's start and end.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from coldtrace.api.fleet_setup import register_chilled_van
from coldtrace.contract import Reading, TelemetryBatch
from coldtrace.devtools.api_process import ApiProcess
from coldtrace.influx import InfluxClient, quote_string
from coldtrace.settings import Settings
from simulators.fleet import Van
from tests.conftest import Devices, stored_count, wait_for

MINUTE = 60_000
READINGS = 60
FAILURE = range(10, 30)  # minutes during which the fridge unit fails (then it over-cools)
HIGH_C = 4.0  # the chilled profile's upper limit


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def cli_env(settings: Settings, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "COLDTRACE_RUN_DIR": str(settings.run_dir),
        "COLDTRACE_INFLUX_URL": settings.influx_url,
        "COLDTRACE_INFLUX_DATABASE": settings.influx_database,
        "COLDTRACE_DATABASE_URL": database_url,
        "COLDTRACE_DELIVERY_SWEEP_S": "0",  # the test moves its delivery itself
    }


@pytest.fixture
def api_process(
    settings: Settings, database_url: str, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """`coldtrace api` on a free port, and the headers of an admin key made by the CLI."""
    api = ApiProcess(cli_env(settings, database_url), tmp_path / "api.log").start()
    try:
        yield api.base, api.headers
    finally:
        api.stop()


def drive(van: Van, start: int) -> list[Reading]:
    readings = []
    for minute in range(READINGS):
        van.setpoint_c = 7.5 if minute in FAILURE else 3.0 if minute < FAILURE.stop else 1.0
        readings.append(van.step(start + minute * MINUTE, 60))
    return readings


def test_delivery_trace_shows_the_rule_engines_breach(
    settings: Settings,
    api_process: tuple[str, dict[str, str]],
    start_ingest: Callable[..., Any],
    devices: Devices,
    influx: InfluxClient,
    prefix: str,
    database_url: str,
) -> None:
    base, admin = api_process
    http = httpx.Client(base_url=f"{base}/api/v1", headers=admin, timeout=30)

    def ok(method: str, path: str, **kw: Any) -> Any:
        r = http.request(method, path, **kw)
        assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    device = vehicle = f"{prefix}-van"
    start = (int(time.time() * 1000) // MINUTE - READINGS - 5) * MINUTE
    ok("POST", "/customers", json={"id": "lyon-lab", "name": "Lyon hospital lab"})
    register_chilled_van(ok, vehicle, device, iso(start - 60 * MINUTE))
    delivery = ok(
        "POST",
        "/deliveries",
        json={
            "reference": f"{prefix}-0740",
            "customer_id": "lyon-lab",
            "vehicle_id": vehicle,
            "compartment": "chiller",
            "pickup": {"address": "MIN de Rungis", "lat": 48.757, "lon": 2.351},
            "dropoff": {"address": "Hospital lab", "lat": 48.80, "lon": 2.40},
            "planned_start": iso(start),
            "planned_end": iso(start + READINGS * MINUTE),
        },
    )["id"]

    start_ingest(
        COLDTRACE_DATABASE_URL=database_url,  # the rules store breaches where the API reads
        COLDTRACE_ALERTS_DEVICE_PROFILES=json.dumps({device: "chilled"}),
    )
    readings = drive(Van(device, 3.0, random.Random(7)), start)
    payloads = [
        TelemetryBatch(device=device, boot=1, readings=readings[i : i + 5])
        .model_dump_json(by_alias=True, exclude_defaults=True)
        .encode()
        for i in range(0, READINGS, 5)
    ]
    ok(
        "POST",
        f"/deliveries/{delivery}/transitions",
        json={"action": "start", "at": iso(readings[0].ts or 0), "source": "driver"},
    )
    devices.publish(device, payloads)
    wait_for(lambda: stored_count(influx, f"^{device}$") == READINGS, 60, "all readings stored")
    delivered = readings[55].ts or 0
    ok(
        "POST",
        f"/deliveries/{delivery}/transitions",
        json={"action": "deliver", "at": iso(delivered)},
    )

    # The rule engine's breaches, as it stored them (the store) and wrote them (InfluxDB):
    # one per probe, the product following the air with its thermal lag, both closed.
    def engine_breaches() -> list[dict[str, Any]]:
        found = ok("GET", "/breaches", params={"device": device})["items"]
        probes = {b["probe"] for b in found}
        done = probes == {"air", "product"} and all(b["state"] == "closed" for b in found)
        return found if done else []

    breaches = wait_for(engine_breaches, 60, "the rule engine's breaches to close")
    written = influx.rows(
        f"SELECT * FROM breach WHERE device = {quote_string(device)} AND transition = 'closed'"
    )
    assert {(int(p["id"]), iso(int(p["start"])), iso(int(p["end"]))) for p in written} == {
        (b["id"], b["start"], b["end"]) for b in breaches
    }, "the store and InfluxDB hold the same breaches"
    by_id = {int(p["id"]): p for p in written}

    # The air probe's excursion, read off the published readings: it begins with the first
    # reading above +4 C once the unit failed.
    first_out = next(
        r
        for r in readings
        if (r.ts or 0) >= start + FAILURE.start * MINUTE and (r.probes["air"] or 0) > HIGH_C
    )
    air = [b for b in breaches if b["probe"] == "air"]
    assert air, f"no breach on the air probe: {breaches}"
    assert air[0]["start"] == iso(first_out.ts or 0)
    assert all(b["delivery_id"] == delivery for b in breaches)

    closed = ok("POST", f"/deliveries/{delivery}/transitions", json={"action": "close"})
    assert closed["state"] == "closed"
    certificate = ok("GET", f"/deliveries/{delivery}/certificates")[0]
    assert certificate["verdict"] == "not_compliant"
    assert {b["id"] for b in certificate["body"]["breaches"]} == {b["id"] for b in breaches}
    # judged again from the stored readings, the delivery shows the breaches the live rules
    # stage found, and no other
    assert certificate["body"]["disagreements"] == []

    trace = ok("GET", f"/deliveries/{delivery}/trace")
    route = trace["features"][0]
    assert route["properties"]["kind"] == "route"
    within = [r for r in readings if (r.ts or 0) <= delivered]
    assert route["geometry"]["coordinates"] == [[r.gps.lon, r.gps.lat] for r in within if r.gps]
    points = {
        f["properties"]["id"]: f for f in trace["features"] if f["properties"]["kind"] == "breach"
    }
    assert set(points) == {b["id"] for b in breaches}
    at = {r.ts: r for r in readings}
    for b in breaches:
        feature = points[b["id"]]
        began = int(by_id[b["id"]]["start"])
        assert feature["properties"]["start"] == iso(began) == b["start"]
        assert feature["properties"]["end"] == iso(int(by_id[b["id"]]["end"]))
        gps = at[began].gps
        assert gps is not None
        assert feature["geometry"]["coordinates"] == [gps.lon, gps.lat]
        assert (feature["properties"]["rule"], feature["properties"]["probe"]) == (
            b["rule"],
            b["probe"],
        )
