"""`coldtrace demo` (`make demo`): one morning round of a simulated fleet, through every part.

Twelve vans leave the Lyon depot (simulators.model: thermal model, round, firmware wire
behaviour), each with one delivery at its last stop for a caterer, a hospital lab or a school
canteen, created through the API as the ordering system would. Van 3's compressor fails
mid-round; van 7's door is left open at its first stop. Ingest stores the readings and its
rules stage judges them; the API's delivery sweep starts and ends each delivery from the GPS
track and closes it, with its signed certificate, once the final readings are in.

Every run is a new round with vans and loggers of its own (``demo<N>-van-01``...): a logger's
readings are placed at device time, and a second round of the same logger over the same
morning would sit on top of the first. Simulated time ends when publishing starts, so no
reading is ever in the future.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import paho.mqtt.client as mqtt

from alerts.profiles import Profile
from coldtrace.settings import Settings
from ingest.report import Landed
from simulators import routes
from simulators.model import VanRun, VanSpec, simulate
from simulators.publish import DeviceConnection, PublishFailed

CITY: Final = "lyon"
COMPARTMENT: Final = "chiller"
CUSTOMERS: Final = {
    "traiteur-bellecour": "Traiteur Bellecour (caterer)",
    "hcl-biology-lab": "Hospices Civils de Lyon, biology lab",
    "cantine-croix-rousse": "Croix-Rousse school canteen",
}
# Which customer each van (1-based) delivers at its last stop; the lab's samples travel as
# refrigerated medicines do (pharma, +2..+8 C), the food chilled (0..+4 C).
LAB_VANS: Final = (2, 7, 11)
CANTEEN_VANS: Final = (4, 8, 12)
COMPRESSOR_VAN: Final = 3  # its unit stops 15 minutes into the round, for an hour
DOOR_VAN: Final = 7  # its door stays open 25 minutes at its first stop (pharma allows 5)
SEED: Final = 1
DAY_MS: Final = 86_400_000
NO_CERTIFICATE: Final = "(none yet)"  # the verdict column of a delivery not closed


def customer_of(van: int) -> str:
    if van in LAB_VANS:
        return "hcl-biology-lab"
    return "cantine-croix-rousse" if van in CANTEEN_VANS else "traiteur-bellecour"


def fleet(vans: int = 12) -> list[VanSpec]:
    """The round: a July morning in Lyon from 10:00, three stops per van, the delivery at
    the last one; one compressor failure, one door left open."""
    specs = []
    for i in range(1, vans + 1):
        faults: list[dict[str, Any]] = []
        if i == COMPRESSOR_VAN:
            faults.append(
                {
                    "kind": "compressor_failure",
                    "compartment": COMPARTMENT,
                    "at_min": 15,
                    "for_min": 60,
                }
            )
        if i == DOOR_VAN:
            faults.append({"kind": "door_left_open", "stop": 1, "for_min": 25})
        profile = "pharma" if i in LAB_VANS else "chilled"
        specs.append(
            VanSpec.model_validate(
                {
                    "id": f"van-{i:02d}",
                    "city": CITY,
                    "month": 7,
                    "start_hour": 10.0,
                    "compartments": [
                        {
                            "name": COMPARTMENT,
                            "profile": profile,
                            "probes": [
                                {"id": "product", "measures": "product"},
                                {"id": "air", "measures": "air"},
                            ],
                        }
                    ],
                    "loading_min": 10,
                    "loading_door_min": 4,
                    "stops": [{"name": f"stop {k}", "dwell_min": 6} for k in (1, 2, 3)],
                    "tail_min": 10,
                    "faults": faults,
                }
            )
        )
    return specs


def faults_told(vans: int) -> str:
    """The faults of a round of ``vans`` vans, as the progress line announces them."""
    told = []
    if vans >= COMPRESSOR_VAN:
        told.append(f"van {COMPRESSOR_VAN}'s compressor fails")
    if vans >= DOOR_VAN:
        told.append(f"van {DOOR_VAN}'s door is left open")
    return "; " + ", ".join(told) if told else ""


def next_round(run_dir: Path) -> int:
    """The number of this demo round (1, 2, ...), counted in the run directory."""
    counter = run_dir / "demo-rounds"
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(f"{n}\n")
    return n


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def hhmm(value: str | None) -> str:
    """An API time (ISO 8601 UTC) as HH:MM UTC, for the tables."""
    return "" if value is None else value[11:16]


@dataclass(frozen=True)
class Van:
    """One van of the round: its vehicle and logger ids, its simulated run, its delivery."""

    number: int
    device: str  # also the vehicle id
    run: VanRun
    epoch_ms: int
    delivery_id: int = 0

    @property
    def customer(self) -> str:
        return customer_of(self.number)

    @property
    def profile(self) -> str:
        return self.run.spec.compartments[0].profile


def simulate_round(
    round_no: int, profiles: dict[str, Profile], vans: int, now_ms: int
) -> list[Van]:
    """Every van's readings and messages, with simulated time ending at ``now_ms``."""
    specs = fleet(vans)
    # A round's length depends on its route, not on when it starts: drafted a day earlier.
    drafts = [simulate(s, f"demo{round_no}-{s.id}", profiles, now_ms - DAY_MS, SEED) for s in specs]
    epoch = now_ms - max(d.duration_ms for d in drafts)
    return [
        Van(i, d.device, simulate(s, d.device, profiles, epoch, SEED), epoch)
        for i, (s, d) in enumerate(zip(specs, drafts, strict=True), start=1)
    ]


Call = Callable[..., Any]


def register(call: Call, vans: list[Van]) -> list[Van]:
    """What the operator and the ordering system enter through the API: customers, vans with
    their chilled compartment, loggers with both probes assigned to it, and one delivery
    per van, from the depot to its last stop. Returns the vans with their delivery ids."""
    for cid, name in CUSTOMERS.items():
        call("POST", "/customers", json={"id": cid, "name": name}, exists_ok=True)
    depot = routes.CITIES[CITY].depot
    out = []
    for van in vans:
        route = van.run.route
        compartment = {"name": COMPARTMENT, "profile": van.profile}
        call(
            "POST",
            "/vehicles",
            json={"id": van.device, "name": f"Van {van.number}", "compartments": [compartment]},
        )
        call("POST", "/devices", json={"id": van.device, "label": "cold-chain logger"})
        for probe in ("product", "air"):
            call(
                "POST",
                f"/devices/{van.device}/assignments",
                json={
                    "probe": probe,
                    "vehicle_id": van.device,
                    "compartment": COMPARTMENT,
                    "valid_from": iso(van.epoch_ms),
                },
            )
        last = route.stops[-1]
        delivery = call(
            "POST",
            "/deliveries",
            json={
                "reference": f"DEMO{van.device[4:].upper()}",
                "customer_id": van.customer,
                "vehicle_id": van.device,
                "compartment": COMPARTMENT,
                "pickup": {"address": depot.name, "lat": depot.lat, "lon": depot.lon},
                "dropoff": {
                    "address": CUSTOMERS[van.customer],
                    "lat": last.place.lat,
                    "lon": last.place.lon,
                },
                "planned_start": iso(van.epoch_ms + round(route.visits[0].depart_s * 1000)),
                "planned_end": iso(van.epoch_ms + round(last.arrive_s * 1000)),
            },
        )
        out.append(
            Van(van.number, van.device, van.run, van.epoch_ms, delivery_id=int(delivery["id"]))
        )
    return out


def publish(
    settings: Settings,
    password_for: Callable[[str], str],
    vans: Sequence[Van],
    speedup: float,
    progress: Callable[[int, int], None],
) -> Counter[str]:
    """Publish every van's messages in simulated-time order, ``speedup`` times faster than
    real time, each over its logger's own connection; return the readings PUBACKed per
    device."""
    queue = sorted(
        ((m.at_ms, i, van.device, m) for van in vans for i, m in enumerate(van.run.messages)),
        key=lambda x: (x[0], x[2], x[1]),
    )
    total = sum(len(m.seqs) for *_, m in queue)
    conns = {v.device: DeviceConnection(settings, v.device, password_for(v.device)) for v in vans}
    for conn in conns.values():
        conn.connect()
    sent: Counter[str] = Counter()
    pending: list[tuple[str, int, mqtt.MQTTMessageInfo]] = []
    t0 = time.monotonic()
    try:
        for at_ms, _, device, message in queue:
            wait = t0 + at_ms / 1000 / speedup - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the vans' pace, compressed
            pending.append((device, len(message.seqs), conns[device].publish(message.payload)))
            still = []
            for dev, n, info in pending:
                if info.is_published():
                    sent[dev] += n
                else:
                    still.append((dev, n, info))
            pending = still
            progress(sum(sent.values()), total)
        for dev, n, info in pending:
            info.wait_for_publish(timeout=30)
            if not info.is_published():
                raise PublishFailed(f"{dev}: message {info.mid} not acknowledged")
            sent[dev] += n
        progress(sum(sent.values()), total)
    finally:
        for conn in conns.values():
            conn.close()
    return sent


# -- the story, told -------------------------------------------------------------------------


def books(sent: Counter[str], before: Landed, after: Landed) -> list[dict[str, object]]:
    """Per van: sent = stored + rejected + missing (seq gaps), and what is lost beyond that."""
    rows: list[dict[str, object]] = []
    for device, n in sorted(sent.items()):
        stored = after.stored[device] - before.stored[device]
        rejected = after.rejected_by_device[device] - before.rejected_by_device[device]
        missing = after.gap_missing[device] - before.gap_missing[device]
        lo, hi = after.probe_range.get(device, (float("nan"), float("nan")))
        rows.append(
            {
                "van": device,
                "sent": n,
                "stored": stored,
                "rejected": rejected,
                "missing": missing,
                "lost": n - stored - rejected - missing,
                "product_min_c": f"{lo:.1f}",
                "product_max_c": f"{hi:.1f}",
            }
        )
    return rows


def deliveries(
    call: Call, vans: Sequence[Van]
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(one row per delivery: its verdict and where its certificate is; one row per breach
    of a delivery: rule, start, end, peak)."""
    rows: list[dict[str, object]] = []
    breaches: list[dict[str, object]] = []
    for van in vans:
        d = call("GET", f"/deliveries/{van.delivery_id}")
        certs = call("GET", f"/deliveries/{van.delivery_id}/certificates")
        found = call("GET", f"/deliveries/{van.delivery_id}/breaches")
        rows.append(
            {
                "delivery": van.delivery_id,
                "customer": d["customer_id"],
                "van": van.device,
                "profile": d["profile"],
                "started": hhmm(d["started"]),
                "delivered": hhmm(d["delivered"]),
                "verdict": certs[0]["verdict"] if certs else NO_CERTIFICATE,
                "breaches": len(found),
                "certificate": f"/api/v1/deliveries/{van.delivery_id}/certificates",
            }
        )
        for b in found:
            breaches.append(
                {
                    "delivery": van.delivery_id,
                    "van": van.device,
                    "probe": b["probe"] or "(device)",
                    "rule": b["rule"],
                    "severity": b["severity"],
                    "start": hhmm(b["start"]),
                    "end": hhmm(b["end"]) if b["end"] else "open",
                    "peak_c": "" if b["peak"] is None else f"{b['peak']:.1f}",
                }
            )
    return rows, breaches


def api_client(base: str, key: str) -> Call:
    """A call under /api/v1 with the key: the response body (``exists_ok``: a 409 is fine)."""
    http = httpx.Client(
        base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )

    def call(method: str, path: str, *, json: Any = None, exists_ok: bool = False) -> Any:
        r = http.request(method, path, json=json)
        if exists_ok and r.status_code == 409:
            return None
        if r.status_code >= 400:
            raise DemoFailed(f"the API refused {method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    return call


class DemoFailed(Exception):
    """A step of the demo failed; the message says which and where to look."""
