"""The API tests' world, shared by the integration and e2e tests: two customers (acme,
bistro), a chilled van with its logger (`fleet`), 45 minutes of the logger's readings as
ingest stores them (`write_run`), breaches as the rules stage stores them, a closed delivery
(`closed_delivery`). Its fixtures reach every test through `pytest_plugins` in
tests/conftest.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from coldtrace.api.fleet_setup import register_chilled_van
from coldtrace.devtools.breach_rows import breach_row
from coldtrace.influx import InfluxClient
from tests.conftest import Api

T0 = 1_767_600_000_000  # 2026-01-05T08:00:00Z: device time of the test deliveries
MIN = 60_000
PICKUP = (48.7570, 2.3510)
DROPOFF = (48.8000, 2.4000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def track(minute: float) -> tuple[float, float, float]:
    """(lat, lon, speed): parked at the pickup 5 min, 30 min drive, parked at the drop-off."""
    f = min(max((minute - 5) / 30, 0.0), 1.0)
    lat = PICKUP[0] + f * (DROPOFF[0] - PICKUP[0])
    lon = PICKUP[1] + f * (DROPOFF[1] - PICKUP[1])
    return lat, lon, 40.0 if 5 <= minute < 35 else 0.0


def product_c(minute: float) -> float:
    return 6.0 if 15 <= minute < 25 else 3.0


def write_run(
    influx: InfluxClient, device: str, minutes: int = 45, product_offset_c: float = 0.0
) -> int:
    """One reading every 30 s as ingest stores it; the door opens at minutes 2 and 40."""
    lines = []
    for i in range(minutes * 2 + 1):
        minute, ts = i / 2, T0 + i * 30_000
        lat, lon, speed = track(minute)
        door = "true" if minute in (2, 40) else "false"
        product = product_c(minute) + product_offset_c
        lines += [
            f"position,device={device} lat={lat},lon={lon},speed_kmh={speed},seq={i}i {ts}",
            f"temperature,device={device},probe=product celsius={product},seq={i}i {ts}",
            f"temperature,device={device},probe=air celsius=2.5,seq={i}i {ts}",
            f"device_health,device={device} seq={i}i,door={door} {ts}",
        ]
    influx.write("\n".join(lines).encode())
    return minutes * 2 + 1


def add_breach(api: Api, device: str, start: int, end: int | None, **kw: Any) -> int:
    """A breach as the rule engine (alerts/) stores it."""
    with api.app.state.sessions() as session:
        b = breach_row(device, start, end, **kw)
        session.add(b)
        session.commit()
        return b.id


def setup_fleet(api: Api, vehicle: str, device: str) -> None:
    for cid, name in (("acme", "ACME labs"), ("bistro", "Bistro")):
        api.ok("POST", "/customers", json={"id": cid, "name": name})
    register_chilled_van(api.ok, vehicle, device, iso(T0 - 60 * MIN))


def plan(vehicle: str, customer: str = "acme", start: int = T0, **kw: Any) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "vehicle_id": vehicle,
        "compartment": "chiller",
        "pickup": {"address": "MIN Rungis", "lat": PICKUP[0], "lon": PICKUP[1]},
        "dropoff": {"address": "Hôpital, labo", "lat": DROPOFF[0], "lon": DROPOFF[1]},
        "planned_start": iso(start),
        "planned_end": iso(start + 60 * MIN),
        **kw,
    }


@pytest.fixture
def fleet(api: Api, prefix: str) -> tuple[str, str]:
    vehicle, device = f"{prefix}-van", f"{prefix}-logger"
    setup_fleet(api, vehicle, device)
    return vehicle, device


def run(api: Api, delivery: int, action: str, at: int | None = None, **kw: Any) -> Any:
    body = {"action": action, **({} if at is None else {"at": iso(at)}), **kw}
    return api.ok("POST", f"/deliveries/{delivery}/transitions", json=body)


@pytest.fixture
def closed_delivery(api: Api, fleet: tuple[str, str], influx: InfluxClient) -> int:
    """The id of a delivery over write_run's readings, T0 to minute 40, closed (version 1 of
    its certificate issued, compliant)."""
    vehicle, device = fleet
    write_run(influx, device)
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    run(api, d["id"], "start", T0)
    run(api, d["id"], "deliver", T0 + 40 * MIN)
    run(api, d["id"], "close")
    return int(d["id"])
