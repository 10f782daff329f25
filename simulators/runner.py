"""Play a placed scenario against a running pipeline (Mosquitto, ingest with its rules stage,
InfluxDB, the store, the API), then fetch what it found and compare it with what the scenario
expects (simulators.compare).

What the ordering system and the drivers do goes through the HTTP API: customers, the vans
with their compartments, the boxes and their probe assignments, the deliveries, then their
start and delivery at the scenario's times (or, ``lifecycle: gps``, detected by the API from
the GPS track once every reading is in). The boxes publish over MQTT, each with its own
broker account, as fast as the broker takes it (the rules judge by device time), and keep
each message until ingest acknowledges it (contract v1.1, simulators.publish.AckingDevice):
what a box sent counts once ingest acknowledged it (`Runner.acknowledged`). Before a
delivery is closed, the runner waits until InfluxDB holds every reading sent so far and the
rules stage has judged them (ingest's /metrics). A delivery closed before the last of its
readings arrived (a backlog after a tunnel) is re-evaluated once they are in.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from coldtrace.deliveries.trace import iso
from coldtrace.influx import InfluxClient, quote_string
from coldtrace.settings import Settings
from simulators.compare import DeliveryFound, Found, Report, compare
from simulators.firmware import Message
from simulators.model import MINUTE_MS
from simulators.publish import AckingDevice, PublishFailed, wait_all_acked
from simulators.scenario import DeliveryTimes, Placed

Progress = Callable[[str], None]


class RunFailed(Exception):
    """The pipeline could not be driven; the message says what to do."""


class Runner:
    def __init__(
        self,
        settings: Settings,
        api_base: str,
        api_key: str,
        password_for: Callable[[str], str],
        progress: Progress | None = None,
        timeout_s: float = 90.0,
    ) -> None:
        """``password_for``: a device's broker password (development: derived from the dev
        key, coldtrace.devtools.services.device_password)."""
        self.settings = settings
        self.http = httpx.Client(
            base_url=f"{api_base.rstrip('/')}/api/v1",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=60,
        )
        self.password_for = password_for
        self.progress = progress or (lambda _: None)
        self.timeout_s = timeout_s
        self.influx = InfluxClient(settings)
        # readings each box sent that ingest acknowledged (contract v1.1), each seq once
        self.acknowledged: Counter[str] = Counter()

    def close(self) -> None:
        self.http.close()
        self.influx.close()

    # -- HTTP ------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        try:
            r = self.http.request(method, path, json=body, params=params or None)
        except httpx.HTTPError as exc:
            raise RunFailed(
                f"the API at {self.http.base_url} does not answer ({exc}): start `coldtrace api`"
            ) from None
        if r.status_code == 401:
            raise RunFailed("the API refused the key: pass an admin key (--api-key)")
        if r.status_code >= 400:
            raise RunFailed(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    # -- the run ---------------------------------------------------------------------------

    def run(self, placed: Placed) -> Report:
        sc = placed.scenario
        report = Report(sc.name, placed.prefix, iso(placed.epoch_ms))
        self._check_rules_stage()
        self.progress(f"{sc.name}: fleet and deliveries through the API")
        self._register(placed)
        ids = {d.spec.ref: self._create_delivery(placed, d) for d in placed.deliveries}
        conns = self._connect(placed)
        try:
            messages = sorted(
                ((m, van) for van, r in placed.runs.items() for m in r.messages),
                key=lambda x: x[0].at_ms,
            )
            closes = sorted(
                (d for d in placed.deliveries if d.close_at is not None),
                key=lambda d: d.close_at or 0,
            )
            sent: list[tuple[Message, str]] = []
            for d in closes:
                now = [x for x in messages if x[0].at_ms < (d.close_at or 0)]
                messages = messages[len(now) :]
                self._publish(placed, conns, now, sent)
                self._close(ids[d.spec.ref])
            self._publish(placed, conns, messages, sent)
        finally:
            for conn in conns.values():
                conn.close()
            self.acknowledged = Counter({d: conn.acked for d, conn in conns.items()})
        for d in placed.deliveries:
            if d.spec.lifecycle == "gps":
                self._detect(ids[d.spec.ref])
            if d.close_at is None:
                self._close(ids[d.spec.ref])
            else:  # its last readings came after it closed
                self.call("POST", f"/deliveries/{ids[d.spec.ref]}/reevaluate")
        self.progress(f"{sc.name}: comparing")
        report.checks = compare(placed, self._found(placed, ids))
        return report

    def _check_rules_stage(self) -> None:
        deadline = time.monotonic() + 75
        while self._metrics().get("alerts_up") != 1:
            if time.monotonic() > deadline:
                raise RunFailed(
                    "ingest's rules stage is not running (alerts_up is not 1 in its /metrics)"
                )
            self.progress("waiting for ingest's rules stage to switch on")
            time.sleep(2)

    def _metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.settings.ingest_health_port}/metrics"
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            raise RunFailed(
                f"ingest's /metrics at {url} does not answer: start `coldtrace ingest` "
                "(COLDTRACE_INGEST_HEALTH_PORT names its port)"
            ) from None
        out: dict[str, float] = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name.startswith("coldtrace_") and value:
                out[name.removeprefix("coldtrace_")] = float(value)
        return out

    def _register(self, placed: Placed) -> None:
        from coldtrace.devtools.services import LocalServices

        sc = placed.scenario
        for customer in sc.customers:
            self.call(
                "POST",
                "/customers",
                customer.model_dump(exclude_none=True) | {"id": f"{placed.prefix}-{customer.id}"},
            )
        valid_from = iso(placed.epoch_ms - 60 * MINUTE_MS)
        for van in sc.fleet:
            device = placed.device(van.id)
            compartments = [{"name": c.name, "profile": c.profile} for c in van.compartments]
            self.call(
                "POST",
                "/vehicles",
                {"id": device, "name": f"Van {van.id}", "compartments": compartments},
            )
            self.call("POST", "/devices", {"id": device, "label": f"sensor box of {van.id}"})
            for c in van.compartments:
                for p in c.probes:  # a cabin probe measures no compartment: not assigned
                    assignment = {"probe": p.id, "vehicle_id": device, "compartment": c.name}
                    self.call(
                        "POST",
                        f"/devices/{device}/assignments",
                        {**assignment, "valid_from": valid_from},
                    )
        LocalServices(self.settings).register_devices(placed.device(v.id) for v in sc.fleet)

    def _create_delivery(self, placed: Placed, d: DeliveryTimes) -> int:
        route = placed.runs[d.spec.van].route
        depot, stop = route.visits[0].place, route.stops[d.spec.stop - 1].place
        body = {
            "reference": f"{placed.prefix}-{d.spec.ref}",
            "customer_id": f"{placed.prefix}-{d.spec.customer}",
            "vehicle_id": placed.device(d.spec.van),
            "compartment": d.spec.compartment,
            "pickup": {"address": depot.name, "lat": depot.lat, "lon": depot.lon},
            "dropoff": {"address": stop.name, "lat": stop.lat, "lon": stop.lon},
            "planned_start": iso(d.start_ms),
            "planned_end": iso(d.deliver_ms),
        }
        if d.spec.profile is not None:
            body["profile"] = d.spec.profile
        delivery_id: int = self.call("POST", "/deliveries", body)["id"]
        if d.spec.lifecycle == "gps":
            return delivery_id  # detected once the readings are in
        # The driver's app says when it left and when it was handed over; both before any
        # reading arrives, so the rules judge every reading by the delivery's profile.
        for action, at in (("start", d.start_ms), ("deliver", d.deliver_ms)):
            self.call(
                "POST",
                f"/deliveries/{delivery_id}/transitions",
                {"action": action, "at": iso(at), "source": "driver"},
            )
        return delivery_id

    def _connect(self, placed: Placed) -> dict[str, AckingDevice]:
        conns = {}
        for van in placed.runs:
            device = placed.device(van)
            conn = AckingDevice(self.settings, device, self.password_for(device), max_inflight=200)
            try:
                conn.connect()
            except PublishFailed as exc:
                raise RunFailed(str(exc)) from None
            conns[device] = conn
        return conns

    def _publish(
        self,
        placed: Placed,
        conns: dict[str, AckingDevice],
        batch: list[tuple[Message, str]],
        sent: list[tuple[Message, str]],
    ) -> None:
        """Publish, each box keeping its messages until ingest acknowledges them, wait for
        every acknowledgement, then until the pipeline stored and judged all (a held reading
        is acknowledged before it is stored)."""
        if not batch:
            return
        before = self._metrics().get("alerts_readings_evaluated_total", 0.0)
        readings = len({(van, s) for m, van in batch for s in m.seqs})
        name = placed.scenario.name
        self.progress(f"{name}: publishing {len(batch)} messages ({readings} readings)")
        for i, (m, van) in enumerate(batch):
            conns[placed.device(van)].send(m.payload, m.seqs)
            if i % 200 == 199:
                self.progress(f"{name}: published {i + 1}/{len(batch)} messages")
        if not wait_all_acked(conns.values(), self.timeout_s):
            short = ", ".join(f"{d} {c.unacked()}" for d, c in conns.items() if c.unacked())
            raise RunFailed(
                f"ingest did not acknowledge every reading in {self.timeout_s:.0f}s (not yet: "
                f"{short}): is `coldtrace ingest` running? (see its log)"
            )
        sent += batch
        self.progress(f"{name}: waiting for ingest to store them and its rules to judge them")
        self._wait_stored(placed, sent)
        self._wait_judged(placed, before + readings)

    def _wait_stored(self, placed: Placed, sent: list[tuple[Message, str]]) -> None:
        want: dict[str, int] = {}
        for van, run in placed.runs.items():
            seqs = {s for m, v in sent if v == van for s in m.seqs}
            # a reading without ts is stored once a reading of its boot with one is in
            dated = {r.boot for r in run.readings if r.seq in seqs and r.ts is not None}
            want[placed.device(van)] = sum(
                1 for r in run.readings if r.seq in seqs and r.boot in dated
            )
        deadline = time.monotonic() + self.timeout_s
        while True:
            have = {d: self._stored(d) for d in want}
            if all(have[d] >= n for d, n in want.items()):
                return
            if time.monotonic() > deadline:
                short = ", ".join(f"{d} {have[d]}/{n}" for d, n in want.items() if have[d] < n)
                raise RunFailed(
                    f"ingest did not store every reading in {self.timeout_s:.0f}s: {short}"
                )
            time.sleep(0.2)

    def _stored(self, device: str) -> int:
        rows = self.influx.rows(
            f"SELECT count(seq) FROM device_health WHERE device = {quote_string(device)}"
        )
        return int(rows[0]["count"]) if rows else 0

    def _wait_judged(self, placed: Placed, evaluated: float) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            m = self._metrics()
            if m.get("alerts_readings_evaluated_total", 0) >= evaluated and not m.get(
                "alerts_queue_batches"
            ):
                return
            if time.monotonic() > deadline:
                raise RunFailed(
                    f"{placed.scenario.name}: the rules stage did not judge every reading in "
                    f"{self.timeout_s:.0f}s (errors: {m.get('alerts_errors_total', 0):.0f}; "
                    "see ingest's log)"
                )
            time.sleep(0.2)

    def _detect(self, delivery_id: int) -> None:
        """Start and hand-over from the GPS track the API holds now."""
        d = self.call("POST", f"/deliveries/{delivery_id}/detect")
        if d["state"] not in ("delivered", "closed"):
            raise RunFailed(
                f"delivery {delivery_id}: the API detected no "
                f"{'departure' if d['state'] == 'planned' else 'arrival'} in its GPS track"
            )

    def _close(self, delivery_id: int) -> None:
        d = self.call("GET", f"/deliveries/{delivery_id}")
        if d["state"] == "closed":  # the API's sweeper closed it already
            return
        try:
            self.call("POST", f"/deliveries/{delivery_id}/transitions", {"action": "close"})
        except RunFailed:
            # ... or did so between the two calls (a refused close is the only failure the
            # sweeper explains)
            if self.call("GET", f"/deliveries/{delivery_id}")["state"] != "closed":
                raise

    # -- what the pipeline found -----------------------------------------------------------

    def _found(self, placed: Placed, ids: dict[str, int]) -> Found:
        breaches = []
        for van in placed.runs:
            page = self.call("GET", "/breaches", device=placed.device(van), limit=500)
            breaches += [b for b in page["items"] if b["state"] != "withdrawn"]
        deliveries = {
            ref: DeliveryFound(
                self.call("GET", f"/deliveries/{delivery_id}/certificates"),
                self.call("GET", f"/deliveries/{delivery_id}/breaches"),
                self.call("GET", f"/deliveries/{delivery_id}"),
            )
            for ref, delivery_id in ids.items()
        }
        return Found(breaches, deliveries, {"ingest": self._ingest_health(), "api": self._health()})

    def _ingest_health(self) -> list[str]:
        url = f"http://127.0.0.1:{self.settings.ingest_health_port}/health"
        return _reasons(httpx.get(url, timeout=10))

    def _health(self) -> list[str]:
        return _reasons(self.http.get("/health"))


def _reasons(r: httpx.Response) -> list[str]:
    """Why a /health answer is failing ([] when it is 200)."""
    if r.status_code == 200:
        return []
    reasons = r.json().get("reasons") if "json" in r.headers.get("content-type", "") else None
    return [str(x) for x in reasons] if reasons else [f"HTTP {r.status_code}"]
