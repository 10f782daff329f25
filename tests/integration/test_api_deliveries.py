"""The API's routes against the real store (SQLite and PostgreSQL) and the real InfluxDB:
master data, delivery lifecycle, trace, readings, breaches, certificates, fleet, audit."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from coldtrace.breaches import Breach
from coldtrace.deliveries.attach import profile_at
from coldtrace.deliveries.automation import sweep
from coldtrace.deliveries.store import wall_ms
from coldtrace.devtools.services import free_port
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings
from tests.conftest import Api, wait_for
from tests.world import (
    MIN,
    T0,
    add_breach,
    iso,
    plan,
    product_c,
    run,
    setup_fleet,
    track,
    write_run,
)


def test_master_data_round_trips(api: Api, fleet: tuple[str, str]) -> None:
    vehicle, device = fleet
    assert api.ok("GET", "/customers/acme")["name"] == "ACME labs"
    assert [c["id"] for c in api.ok("GET", "/customers")["items"]] == ["acme", "bistro"]
    v = api.ok("GET", f"/vehicles/{vehicle}")
    assert v["compartments"] == [{"name": "chiller", "profile": "chilled"}]
    assert api.ok("GET", "/vehicles")["total"] == 1
    assert api.ok("GET", f"/devices/{device}")["label"] == "logger"
    assert [d["id"] for d in api.ok("GET", "/devices")["items"]] == [device]
    assigned = api.ok("GET", f"/devices/{device}/assignments")
    assert {(a["probe"], a["vehicle_id"], a["valid_to"]) for a in assigned} == {
        ("product", vehicle, None),
        ("air", vehicle, None),
    }
    r = api.client.post("/api/v1/customers", headers=api.admin, json={"id": "acme", "name": "x"})
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"


def test_moving_a_device_ends_its_previous_assignment(api: Api, fleet: tuple[str, str]) -> None:
    vehicle, device = fleet
    api.ok(
        "POST",
        "/vehicles",
        json={"id": f"{vehicle}-2", "name": "Van 2", "compartments": [{"name": "chiller"}]},
    )
    moved = T0 + 20 * MIN
    api.ok(
        "POST",
        f"/devices/{device}/assignments",
        json={
            "probe": "product",
            "vehicle_id": f"{vehicle}-2",
            "compartment": "chiller",
            "valid_from": iso(moved),
        },
    )
    product = [
        a for a in api.ok("GET", f"/devices/{device}/assignments") if a["probe"] == "product"
    ]
    assert [(a["vehicle_id"], a["valid_to"]) for a in product] == [
        (vehicle, iso(moved).replace("Z", "Z")),
        (f"{vehicle}-2", None),
    ]
    # History is not rewritten: an assignment starting before the current one is refused.
    r = api.client.post(
        f"/api/v1/devices/{device}/assignments",
        headers=api.admin,
        json={
            "probe": "product",
            "vehicle_id": vehicle,
            "compartment": "chiller",
            "valid_from": iso(moved - MIN),
        },
    )
    assert r.status_code == 409


def test_delivery_lifecycle_with_certificate_and_audit(
    api: Api, fleet: tuple[str, str], influx: InfluxClient
) -> None:
    vehicle, device = fleet
    write_run(influx, device)
    d = api.ok("POST", "/deliveries", json=plan(vehicle, reference="ORD-1"))
    assert (d["state"], d["profile"], d["vehicle_id"]) == ("planned", "chilled", vehicle)
    assert api.ok("GET", f"/deliveries/{d['id']}") == d

    run(api, d["id"], "start", T0 + 5 * MIN, source="driver")
    r = api.client.post(
        f"/api/v1/deliveries/{d['id']}/transitions", headers=api.admin, json={"action": "close"}
    )
    assert r.status_code == 409 and "in_transit" in r.json()["detail"]
    run(api, d["id"], "deliver", T0 + 40 * MIN)
    closed = run(api, d["id"], "close")
    assert closed["state"] == "closed"
    assert (closed["started"], closed["start_source"]) == (iso(T0 + 5 * MIN), "driver")
    assert closed["delivered"] == iso(T0 + 40 * MIN)

    certs = api.ok("GET", f"/deliveries/{d['id']}/certificates")
    assert [(c["version"], c["verdict"], c["superseded"]) for c in certs] == [
        (1, "compliant", None)
    ]
    assert api.ok("GET", f"/certificates/{certs[0]['id']}") == certs[0]

    audit = api.ok("GET", "/audit", params={"entity": "delivery", "entity_id": str(d["id"])})
    actions = [e["action"] for e in reversed(audit["items"])]
    assert actions == ["delivery.create", "delivery.start", "delivery.deliver", "delivery.close"]
    start = next(e for e in audit["items"] if e["action"] == "delivery.start")
    assert start["old"]["state"] == "planned" and start["new"]["state"] == "in_transit"
    assert start["new"]["started_ms"] == T0 + 5 * MIN
    assert start["actor"].startswith("key-") and start["actor"].endswith(":admin")


def test_late_breach_supersedes_the_certificate(
    api: Api, fleet: tuple[str, str], closed_delivery: int
) -> None:
    _, device = fleet
    again = api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    assert len(again) == 1, "nothing changed: no new version"
    # found late by the live stage, but the stored readings (6.0 C for 10 min) show no breach
    breach = add_breach(api, device, T0 + 15 * MIN, T0 + 25 * MIN, rule="excursion_high")
    certs = api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    assert [(c["version"], c["verdict"]) for c in certs] == [(2, "incomplete"), (1, "compliant")]
    assert certs[0]["superseded"] is None and certs[1]["superseded"] is not None
    assert certs[0]["body"]["breaches"] == []
    assert certs[0]["body"]["disagreements"] == [
        {
            "found_by": "live",
            "device": device,
            "probe": "product",
            "rule": "excursion_high",
            "start": iso(T0 + 15 * MIN),
            "live_breach_id": breach,
        }
    ]
    assert certs[1]["body"]["disagreements"] == [], "the issued version was not edited"


def test_device_level_breaches_are_the_deliverys_and_count_for_its_verdict(
    api: Api, fleet: tuple[str, str], closed_delivery: int
) -> None:
    _, device = fleet
    d = closed_delivery  # T0 to minute 40; both of the logger's probes measure its compartment
    silent = add_breach(api, device, T0 + 10 * MIN, T0 + 25 * MIN, probe="", rule="device_silent")
    add_breach(api, device, T0 + 50 * MIN, T0 + 70 * MIN, probe="", rule="device_silent")  # after
    add_breach(api, "another-logger", T0 + 10 * MIN, None, probe="", rule="device_silent")
    listed = api.ok("GET", f"/deliveries/{d}/breaches")
    assert [(b["id"], b["probe"], b["rule"], b["delivery_id"]) for b in listed] == [
        (silent, "", "device_silent", d)  # once, though two of its probes are assigned
    ]
    assert api.ok("GET", f"/breaches/{silent}")["delivery_id"] == d
    certs = api.ok("POST", f"/deliveries/{d}/reevaluate")
    assert [(c["version"], c["verdict"]) for c in certs] == [(2, "incomplete"), (1, "compliant")]
    assert [(b["id"], b["probe"], b["rule"]) for b in certs[0]["body"]["breaches"]] == [
        (silent, "", "device_silent")
    ]
    # the door left open past the profile's limit: a breach of the profile, not a gap
    door = add_breach(api, device, T0 + 30 * MIN, T0 + 39 * MIN, probe="", rule="door_open")
    certs = api.ok("POST", f"/deliveries/{d}/reevaluate")
    assert (certs[0]["version"], certs[0]["verdict"]) == (3, "not_compliant")
    assert [b["id"] for b in certs[0]["body"]["breaches"]] == [silent, door]


def test_sweep_recertifies_when_breaches_change_late(
    api: Api, fleet: tuple[str, str], closed_delivery: int
) -> None:
    _, device = fleet
    state = api.app.state
    assert sweep(state.sessions, state.source, state.settings, state.certifier) == 0
    breach = add_breach(
        api, device, T0 + 15 * MIN, T0 + 25 * MIN, rule="excursion_high", updated_at=wall_ms() + 1
    )
    assert sweep(state.sessions, state.source, state.settings, state.certifier) == 1
    assert sweep(state.sessions, state.source, state.settings, state.certifier) == 0
    with state.sessions() as session:  # late readings showed it never happened
        row = session.get(Breach, breach)
        assert row is not None
        row.state, row.updated_at = "withdrawn", wall_ms() + 2
        session.commit()
    assert sweep(state.sessions, state.source, state.settings, state.certifier) == 1
    certs = api.ok("GET", f"/deliveries/{closed_delivery}/certificates")
    # version 2: the live stage's breach is not in the stored readings (a disagreement);
    # version 3: withdrawn, the two agree again
    assert [(c["version"], c["verdict"]) for c in certs] == [
        (3, "compliant"),
        (2, "incomplete"),
        (1, "compliant"),
    ]


def test_close_waits_for_the_final_readings(api: Api, fleet: tuple[str, str]) -> None:
    vehicle, _ = fleet
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    run(api, d["id"], "start")
    run(api, d["id"], "deliver")  # just now: no reading from after it, grace period running
    r = api.client.post(
        f"/api/v1/deliveries/{d['id']}/transitions", headers=api.admin, json={"action": "close"}
    )
    assert r.status_code == 409 and "COLDTRACE_CLOSE_GRACE_S" in r.json()["detail"]


def test_cancel_and_refused_transitions(api: Api, fleet: tuple[str, str]) -> None:
    vehicle, _ = fleet
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    assert run(api, d["id"], "cancel")["state"] == "cancelled"
    r = api.client.post(
        f"/api/v1/deliveries/{d['id']}/transitions", headers=api.admin, json={"action": "start"}
    )
    assert r.status_code == 409
    body = r.json()
    assert body["status"] == 409 and body["state"] == "cancelled"
    assert body["instance"] == f"/api/v1/deliveries/{d['id']}/transitions"


def test_invalid_requests_are_problem_details(api: Api, fleet: tuple[str, str]) -> None:
    vehicle, _ = fleet
    bad = plan(vehicle)
    bad["pickup"]["lat"] = 123
    r = api.client.post("/api/v1/deliveries", headers=api.admin, json=bad)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith("body.pickup.lat")
    r = api.client.post(
        "/api/v1/deliveries",
        headers=api.admin,
        json=plan(vehicle, start=T0) | {"planned_end": iso(T0 - MIN)},
    )
    assert r.status_code == 409
    r = api.client.post("/api/v1/deliveries", headers=api.admin, json=plan(vehicle, profile="icy"))
    assert r.status_code == 409 and "unknown product profile 'icy'" in r.json()["detail"]
    r = api.client.post(
        "/api/v1/deliveries", headers=api.admin, json=plan(vehicle, customer="nobody")
    )
    assert r.status_code == 404 and r.json()["detail"] == "no customer 'nobody'"


def test_list_filters_and_pagination(api: Api, fleet: tuple[str, str]) -> None:
    vehicle, _ = fleet
    ids = [
        api.ok("POST", "/deliveries", json=plan(vehicle, customer=c, start=T0 + i * 60 * MIN))["id"]
        for i, c in enumerate(["acme", "bistro", "acme", "acme"])
    ]
    run(api, ids[0], "start")
    page = api.ok("GET", "/deliveries", params={"customer_id": "acme", "limit": 2})
    assert (page["total"], [d["id"] for d in page["items"]]) == (3, [ids[3], ids[2]])
    page = api.ok("GET", "/deliveries", params={"customer_id": "acme", "limit": 2, "offset": 2})
    assert [d["id"] for d in page["items"]] == [ids[0]]
    assert [
        d["id"] for d in api.ok("GET", "/deliveries", params={"state": "in_transit"})["items"]
    ] == [ids[0]]
    window = {"planned_after": iso(T0 + 60 * MIN), "planned_before": iso(T0 + 180 * MIN)}
    assert [d["id"] for d in api.ok("GET", "/deliveries", params=window)["items"]] == [
        ids[2],
        ids[1],
    ]
    assert api.ok("GET", "/deliveries", params={"vehicle_id": "other"})["total"] == 0


def test_trace_geojson_route_stops_and_breach(
    api: Api, fleet: tuple[str, str], influx: InfluxClient
) -> None:
    vehicle, device = fleet
    fixes = write_run(influx, device)
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    run(api, d["id"], "start", T0)
    run(api, d["id"], "deliver", T0 + 45 * MIN)
    breach = add_breach(api, device, T0 + 15 * MIN, T0 + 25 * MIN)
    add_breach(api, device, T0 - 50 * MIN, T0 - 40 * MIN)  # before the delivery: not its own

    r = api.client.get(f"/api/v1/deliveries/{d['id']}/trace", headers=api.admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    features = r.json()["features"]
    route = next(f for f in features if f["properties"]["kind"] == "route")
    assert route["geometry"]["type"] == "LineString"
    assert len(route["geometry"]["coordinates"]) == fixes
    lat, lon, _ = track(0)
    assert route["geometry"]["coordinates"][0] == [lon, lat]
    assert route["properties"]["times"][-1] == T0 + 45 * MIN

    stops = [f["properties"] for f in features if f["properties"]["kind"] == "stop"]
    assert [(s["arrived"], s["dwell_s"], s["door_openings"]) for s in stops] == [
        (iso(T0), 270.0, 1),  # parked at the pickup until the fix before minute 5
        (iso(T0 + 35 * MIN), 600.0, 1),
    ]
    breaches = [f for f in features if f["properties"]["kind"] == "breach"]
    assert [b["properties"]["id"] for b in breaches] == [breach]
    lat, lon, _ = track(15)
    assert breaches[0]["geometry"]["coordinates"] == pytest.approx([lon, lat])
    props = breaches[0]["properties"]
    assert (props["start"], props["end"], props["duration_s"]) == (
        iso(T0 + 15 * MIN),
        iso(T0 + 25 * MIN),
        600.0,
    )
    assert (props["rule"], props["probe"], props["severity"]) == ("excursion", "product", "major")

    listed = api.ok("GET", f"/deliveries/{d['id']}/breaches")
    assert [(b["id"], b["delivery_id"], b["start"]) for b in listed] == [
        (breach, d["id"], iso(T0 + 15 * MIN))
    ]
    assert api.ok("GET", f"/breaches/{breach}")["delivery_id"] == d["id"]


def test_trace_downsampled_keeps_ends_and_peaks(
    api: Api, fleet: tuple[str, str], influx: InfluxClient
) -> None:
    vehicle, device = fleet
    write_run(influx, device)
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    run(api, d["id"], "start", T0)
    run(api, d["id"], "deliver", T0 + 45 * MIN)
    trace = api.ok("GET", f"/deliveries/{d['id']}/trace", params={"max_points": 10})
    coords = trace["features"][0]["geometry"]["coordinates"]
    assert len(coords) == 10
    assert coords[-1] == pytest.approx(list(reversed(track(45)[:2])))

    full = api.ok("GET", f"/deliveries/{d['id']}/readings")
    assert full["downsampled"] is False
    assert len(full["temperature"]["product"]["t"]) == 91
    assert full["position"]["t"][0] == T0 and full["position"]["t"][-1] == T0 + 45 * MIN
    small = api.ok("GET", f"/deliveries/{d['id']}/readings", params={"max_points": 10})
    assert small["downsampled"] is True
    product = small["temperature"]["product"]
    assert len(product["t"]) <= 10 and max(product["c"]) == 6.0 and min(product["c"]) == 3.0
    assert product["t"] == sorted(product["t"])


def test_late_readings_show_in_a_finished_delivery(
    api: Api, fleet: tuple[str, str], influx: InfluxClient
) -> None:
    """A finished delivery's readings are served from memory, but never stale."""
    vehicle, device = fleet
    write_run(influx, device, minutes=20)
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    run(api, d["id"], "start", T0)
    run(api, d["id"], "deliver", T0 + 45 * MIN)
    first = api.ok("GET", f"/deliveries/{d['id']}/readings")
    assert api.ok("GET", f"/deliveries/{d['id']}/readings") == first
    late = T0 + 30 * MIN  # the logger's backlog: one more reading, sent late
    influx.write(
        f"temperature,device={device},probe=product celsius=9.5,seq=999i {late}\n"
        f"device_health,device={device} seq=999i,door=false {late}".encode()
    )
    again = api.ok("GET", f"/deliveries/{d['id']}/readings")
    product = again["temperature"]["product"]
    assert len(product["t"]) == len(first["temperature"]["product"]["t"]) + 1
    assert (product["t"][-1], product["c"][-1]) == (late, 9.5)


def test_trace_follows_a_device_moved_mid_delivery(
    api: Api, fleet: tuple[str, str], influx: InfluxClient, prefix: str
) -> None:
    """At minute 20 the logger goes to another van and a second one takes over the chiller:
    the trace shows the first one's readings until then, the second one's after."""
    vehicle, first = fleet
    second = f"{prefix}-logger-2"
    api.ok("POST", "/devices", json={"id": second})
    api.ok(
        "POST",
        "/vehicles",
        json={"id": f"{vehicle}-2", "name": "Van 2", "compartments": [{"name": "chiller"}]},
    )
    write_run(influx, first)
    write_run(influx, second, product_offset_c=10.0)
    moved = T0 + 20 * MIN
    for device, van in ((first, f"{vehicle}-2"), (second, vehicle)):
        api.ok(
            "POST",
            f"/devices/{device}/assignments",
            json={
                "probe": "product",
                "vehicle_id": van,
                "compartment": "chiller",
                "valid_from": iso(moved),
            },
        )
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    run(api, d["id"], "start", T0)
    run(api, d["id"], "deliver", T0 + 45 * MIN)
    product = api.ok("GET", f"/deliveries/{d['id']}/readings")["temperature"]["product"]
    expected = [(T0 + i * 30_000, product_c(i / 2) + (10.0 if i >= 40 else 0.0)) for i in range(91)]
    assert list(zip(product["t"], product["c"], strict=True)) == expected
    in_breach_before = add_breach(api, first, T0 + 15 * MIN, T0 + 16 * MIN)
    in_other_van = add_breach(api, first, T0 + 30 * MIN, T0 + 31 * MIN)
    in_breach_after = add_breach(api, second, T0 + 30 * MIN, T0 + 31 * MIN)
    attached = [b["id"] for b in api.ok("GET", f"/deliveries/{d['id']}/breaches")]
    assert attached == [in_breach_before, in_breach_after]
    assert in_other_van not in attached


def test_gps_detects_start_and_end(api: Api, fleet: tuple[str, str], influx: InfluxClient) -> None:
    vehicle, device = fleet
    write_run(influx, device)
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    detected = api.ok("POST", f"/deliveries/{d['id']}/detect")
    # The drive covers 5.98 km in 60 steps of 30 s (99.7 m each): 3 steps after minute 5 the
    # van is 299 m from the pickup, inside the 300 m geofence; the 4th step leaves it.
    assert (detected["state"], detected["start_source"]) == ("delivered", "geofence")
    assert detected["started"] == iso(T0 + 7 * MIN)
    assert (detected["delivered"], detected["end_source"]) == (iso(T0 + 35 * MIN), "geofence")


def test_sweep_starts_ends_and_closes_on_its_own(
    api: Api, fleet: tuple[str, str], influx: InfluxClient
) -> None:
    vehicle, device = fleet
    write_run(influx, device)
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    later = api.ok("POST", "/deliveries", json=plan(vehicle, start=T0 + 48 * 3600_000))
    state = api.app.state
    assert sweep(state.sessions, state.source, state.settings, state.certifier) == 1
    swept = api.ok("GET", f"/deliveries/{d['id']}")
    assert (swept["state"], swept["start_source"], swept["end_source"]) == (
        "closed",
        "geofence",
        "geofence",
    )
    assert api.ok("GET", f"/deliveries/{later['id']}")["state"] == "planned"
    [certificate] = api.ok("GET", f"/deliveries/{d['id']}/certificates")
    assert certificate["verdict"] == "compliant"
    audit = api.ok("GET", "/audit", params={"entity": "delivery", "entity_id": str(d["id"])})
    assert {e["actor"] for e in audit["items"][:3]} == {"system:sweeper"}
    assert sweep(state.sessions, state.source, state.settings, state.certifier) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_serving_app_sweeps_on_its_own_until_it_stops(
    api: Api, fleet: tuple[str, str], influx: InfluxClient
) -> None:
    """The sweep thread the composition root starts with the app (coldtrace.api.background):
    it moves a delivery on while the app serves, and ends with it."""
    from fastapi.testclient import TestClient

    from coldtrace.bootstrap import api_app

    vehicle, device = fleet
    write_run(influx, device)
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    serving = api_app(api.settings.model_copy(update={"delivery_sweep_s": 0.2}))
    with TestClient(serving):  # its lifespan: startup, then shutdown on the way out
        wait_for(
            lambda: api.ok("GET", f"/deliveries/{d['id']}")["state"] == "closed",
            30,
            "the sweep to close the delivery",
        )
        [sweeper] = [t for t in threading.enumerate() if t.name == "delivery-sweep"]
    sweeper.join(5)
    assert not sweeper.is_alive()


def test_profile_a_probe_is_judged_by(api: Api, fleet: tuple[str, str]) -> None:
    vehicle, device = fleet
    d = api.ok("POST", "/deliveries", json=plan(vehicle, profile="pharma"))
    with api.app.state.sessions() as session:
        assert profile_at(session, device, "product", T0 + 10 * MIN) == "pharma"
        assert profile_at(session, device, "product", T0 - 10 * MIN) == "chilled"  # default
        assert profile_at(session, device, "spare", T0) is None  # measures nothing
        assert profile_at(session, device, "product", T0 - 2 * 60 * MIN) is None  # not fitted
    run(api, d["id"], "cancel")
    with api.app.state.sessions() as session:
        assert profile_at(session, device, "product", T0 + 10 * MIN) == "chilled"


def test_fleet_live_state(api: Api, fleet: tuple[str, str], influx: InfluxClient) -> None:
    vehicle, device = fleet
    write_run(influx, device)
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    run(api, d["id"], "start", T0)
    add_breach(api, device, T0 + 15 * MIN, None)
    van = next(v for v in api.ok("GET", "/fleet") if v["vehicle_id"] == vehicle)
    lat, lon, speed = track(45)
    assert van["devices"] == [device]
    assert van["last_reading"] == iso(T0 + 45 * MIN)
    assert van["position"] == {
        "at": iso(T0 + 45 * MIN),
        "lat": pytest.approx(lat),
        "lon": pytest.approx(lon),
        "speed_kmh": speed,
    }
    assert van["temperatures"] == {"air": 2.5, "product": 3.0}
    assert (van["open_breaches"], van["active_delivery_id"]) == (1, d["id"])


def test_audit_log_is_read_only_and_append_only(api: Api, fleet: tuple[str, str]) -> None:
    entries = api.ok("GET", "/audit", params={"limit": 500})["items"]
    assert {"customer.create", "vehicle.create", "device.create", "assignment.create"} <= {
        e["action"] for e in entries
    }
    assert api.client.delete("/api/v1/audit", headers=api.admin).status_code == 405
    assert api.client.post("/api/v1/audit", headers=api.admin, json={}).status_code == 405
    with api.app.state.engine.connect() as conn:
        for statement in ("UPDATE audit_log SET actor = 'me'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match=r"append-only|permission denied"):
                conn.execute(text(statement))
            conn.rollback()


def test_health_and_metrics(api: Api, fleet: tuple[str, str], influx: InfluxClient) -> None:
    vehicle, device = fleet
    api.ok("POST", "/deliveries", json=plan(vehicle))
    add_breach(api, device, T0, None)
    r = api.client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "database": True,
        "influx": True,
        "ingest": None,  # COLDTRACE_INGEST_HEALTH_URL unset: not asked
        "reasons": [],
    }
    metrics = api.client.get("/metrics").text
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines())
    assert values["coldtrace_breaches_open"] == "1"
    assert values["coldtrace_certificate_disagreements_total"] == "0"
    assert values["coldtrace_certificates_disagreeing"] == "0"
    assert values['coldtrace_deliveries{state="planned"}'] == "1"
    assert "coldtrace_readings_stored_5m" in values
    assert float(values['coldtrace_api_requests_total{method="POST",status="201"}']) >= 1


def test_influxdb_down_fails_health_and_answers_503(
    settings: Settings, database_url: str, prefix: str
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # no InfluxDB listens there
    down = Api(settings.model_copy(update={"database_url": database_url, "influx_url": nowhere}))
    try:
        r = down.client.get("/api/v1/health")
        assert r.status_code == 503
        assert r.json() == {
            "status": "failing",
            "database": True,
            "influx": False,
            "ingest": None,
            "reasons": ["InfluxDB unreachable"],
        }
        setup_fleet(down, f"{prefix}-van", f"{prefix}-logger")
        d = down.ok("POST", "/deliveries", json=plan(f"{prefix}-van"))
        r = down.client.get(f"/api/v1/deliveries/{d['id']}/trace", headers=down.admin)
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"].startswith("InfluxDB unavailable")
    finally:
        down.close()


def test_openapi_documents_every_route(api: Api) -> None:
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/api/v1/deliveries/{delivery_id}/trace" in paths
    assert "/api/v1/audit" in paths and "/metrics" in paths
