"""Play a placed scenario against a running pipeline (Mosquitto, ingest with its rules stage,
InfluxDB, the store, the API) and compare what it found with what the scenario expects.

What the ordering system and the drivers do goes through the HTTP API: customers, the vans
with their compartments, the boxes and their probe assignments, the deliveries, then their
start and delivery at the scenario's times. The boxes publish over MQTT, each with its own
broker account, as fast as the broker takes it (the rules judge by device time). Before a
delivery is closed, the runner waits until InfluxDB holds every reading sent so far and the
rules stage has judged them (ingest's /metrics). A delivery closed before the last of its
readings arrived (a backlog after a tunnel) is re-evaluated once they are in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import httpx

from coldtrace.influx import InfluxClient, quote_string
from coldtrace.settings import Settings
from deliveries.trace import iso
from simulators.firmware import Message
from simulators.model import MINUTE_MS
from simulators.publish import DeviceConnection, PublishFailed
from simulators.scenario import DeliveryTimes, Placed

Progress = Callable[[str], None]


class RunFailed(Exception):
    """The pipeline could not be driven; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Check:
    """One line of expected against found."""

    check: str  # breach, gap, verdict, versions, agreement
    subject: str
    expected: str
    found: str
    result: str  # ok, MISSED, SPURIOUS, WRONG

    @property
    def ok(self) -> bool:
        return self.result == "ok"


@dataclass
class Report:
    scenario: str
    prefix: str
    start: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "prefix": self.prefix,
            "start": self.start,
            "mismatches": len(self.mismatches),
            "checks": [asdict(c) for c in self.checks],
            "notes": self.notes,
        }


def _ms(value: str | None) -> int | None:
    return None if value is None else round(datetime.fromisoformat(value).timestamp() * 1000)


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
        key, coldtrace.services.device_password)."""
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
        for d in placed.deliveries:
            if d.close_at is None:
                self._close(ids[d.spec.ref])
            else:  # its last readings came after it closed
                self.call("POST", f"/deliveries/{ids[d.spec.ref]}/reevaluate")
        self.progress(f"{sc.name}: comparing")
        self._compare(placed, ids, report)
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
        from coldtrace.services import LocalServices

        sc = placed.scenario
        for customer in sc.customers:
            self.call(
                "POST",
                "/customers",
                {"id": f"{placed.prefix}-{customer.id}", "name": customer.name},
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
        # The driver's app says when it left and when it was handed over; both before any
        # reading arrives, so the rules judge every reading by the delivery's profile.
        for action, at in (("start", d.start_ms), ("deliver", d.deliver_ms)):
            self.call(
                "POST",
                f"/deliveries/{delivery_id}/transitions",
                {"action": action, "at": iso(at), "source": "driver"},
            )
        return delivery_id

    def _connect(self, placed: Placed) -> dict[str, DeviceConnection]:
        conns = {}
        for van in placed.runs:
            device = placed.device(van)
            conn = DeviceConnection(
                self.settings, device, self.password_for(device), max_inflight=200
            )
            try:
                conn.connect()
            except (OSError, PublishFailed) as exc:
                raise RunFailed(
                    f"cannot reach the broker at {self.settings.mqtt_host}:"
                    f"{self.settings.mqtt_port} as {device} ({exc}): `coldtrace services up`"
                ) from None
            conns[device] = conn
        return conns

    def _publish(
        self,
        placed: Placed,
        conns: dict[str, DeviceConnection],
        batch: list[tuple[Message, str]],
        sent: list[tuple[Message, str]],
    ) -> None:
        """Publish, wait for every PUBACK, then until the pipeline stored and judged all."""
        if not batch:
            return
        before = self._metrics().get("alerts_readings_evaluated_total", 0.0)
        infos = []
        for i, (m, van) in enumerate(batch):
            infos.append(conns[placed.device(van)].publish(m.payload))
            if i % 200 == 199:
                self.progress(f"{placed.scenario.name}: published {i + 1}/{len(batch)} messages")
        for info in infos:
            info.wait_for_publish(timeout=30)
            if not info.is_published():
                raise RunFailed(f"the broker did not acknowledge message {info.mid}")
        sent += batch
        self._wait_stored(placed, sent)
        readings = len({(van, s) for m, van in batch for s in m.seqs})
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

    # -- expected against found ------------------------------------------------------------

    def _compare(self, placed: Placed, ids: dict[str, int], report: Report) -> None:
        sc = placed.scenario
        t = _Clock(placed.epoch_ms)
        tolerance = {van.id: round(van.interval_s * 1000) for van in sc.fleet}
        found: list[dict[str, Any]] = []
        for van in sc.fleet:
            page = self.call("GET", "/breaches", device=placed.device(van.id), limit=500)
            for b in page["items"]:
                if b["state"] != "withdrawn":
                    found.append({**b, "van": van.id})
        expected = list(sc.expected.breaches)
        for e in expected:
            tol = tolerance[e.van]
            start = placed.at(e.start_min)
            same = [
                b
                for b in found
                if (b["van"], b["probe"], b["rule"]) == (e.van, e.probe, e.rule)
                and abs((_ms(b["start"]) or 0) - start) <= tol
            ]
            subject = f"{e.van}/{e.probe or 'device'} {e.rule}"
            want = t.breach(
                start, None if e.end_min is None else placed.at(e.end_min), e.severity, e.suppressed
            )
            if not same:
                report.checks.append(Check("breach", subject, want, "-", "MISSED"))
                continue
            b = same[0]
            found.remove(b)
            end = _ms(b["end"])
            good_end = (
                end is None
                if e.end_min is None
                else end is not None and abs(end - placed.at(e.end_min)) <= tol
            )
            got = t.breach(_ms(b["start"]) or 0, end, b["severity"], b["suppressed"])
            right = good_end and b["severity"] == e.severity and b["suppressed"] == e.suppressed
            report.checks.append(Check("breach", subject, want, got, "ok" if right else "WRONG"))
        for b in found:
            subject = f"{b['van']}/{b['probe'] or 'device'} {b['rule']}"
            got = t.breach(_ms(b["start"]) or 0, _ms(b["end"]), b["severity"], b["suppressed"])
            report.checks.append(Check("breach", subject, "-", got, "SPURIOUS"))
        for d in placed.deliveries:
            self._compare_delivery(placed, d, ids[d.spec.ref], t, tolerance, report)

    def _compare_delivery(
        self,
        placed: Placed,
        d: DeliveryTimes,
        delivery_id: int,
        t: _Clock,
        tolerance: dict[str, int],
        report: Report,
    ) -> None:
        sc, ref = placed.scenario, d.spec.ref
        tol = tolerance[d.spec.van]
        certificates = self.call("GET", f"/deliveries/{delivery_id}/certificates")
        newest = certificates[0] if certificates else None
        verdict = sc.expected.verdicts[ref]
        got = newest["verdict"] if newest else "(no certificate)"
        report.checks.append(
            Check("verdict", ref, verdict, got, "ok" if got == verdict else "WRONG")
        )
        versions = sc.expected.certificate_versions.get(ref)
        if versions is not None:
            n = len(certificates)
            ok = "ok" if n == versions else "WRONG"
            report.checks.append(Check("versions", ref, str(versions), str(n), ok))
        body = newest["body"] if newest else {}
        gaps = [g for g in body.get("gaps", []) if isinstance(g, dict)]
        for e in (g for g in sc.expected.gaps if g.delivery == ref):
            start, end = placed.at(e.start_min), placed.at(e.end_min)
            device = placed.device(e.van)
            same = [
                g
                for g in gaps
                if (g.get("device"), g.get("probe")) == (device, e.probe)
                and abs((_ms(g.get("start")) or 0) - start) <= tol
                and abs((_ms(g.get("end")) or 0) - end) <= tol
            ]
            subject = f"{ref} {e.van}/{e.probe}"
            if same:
                gaps.remove(same[0])
            report.checks.append(
                Check(
                    "gap",
                    subject,
                    t.span(start, end),
                    t.span(_ms(same[0]["start"]) or 0, _ms(same[0]["end"])) if same else "-",
                    "ok" if same else "MISSED",
                )
            )
        for g in gaps:
            subject = f"{ref} {g.get('device')}/{g.get('probe')}"
            span = t.span(_ms(g.get("start")) or 0, _ms(g.get("end")))
            report.checks.append(Check("gap", subject, "-", span, "SPURIOUS"))
        live = self.call("GET", f"/deliveries/{delivery_id}/breaches")
        report.checks.append(_agreement(ref, live, body, tol))


def _agreement(ref: str, live: list[dict[str, Any]], body: dict[str, Any], tol: int) -> Check:
    """Whether the live breaches of a delivery and its certificate's are the same ones (same
    device, probe, rule, start within one sampling interval), and the certificate found no
    disagreement itself."""
    certified = [b for b in body.get("breaches", []) if isinstance(b, dict)]

    def key(b: dict[str, Any]) -> tuple[str, str, str]:
        return (b.get("device", ""), b.get("probe", ""), b.get("rule", ""))

    rest = list(certified)
    alone: list[str] = []
    for b in live:
        twin = next(
            (
                c
                for c in rest
                if key(c) == key(b)
                and abs((_ms(c.get("start")) or 0) - (_ms(b["start"]) or 0)) <= tol
            ),
            None,
        )
        if twin is None:
            alone.append(f"live {b['probe'] or 'device'} {b['rule']}")
        else:
            rest.remove(twin)
    alone += [f"certificate {c.get('probe') or 'device'} {c.get('rule')}" for c in rest]
    alone += [
        f"certificate says {d.get('rule')} on {d.get('probe') or 'device'} found by "
        f"{d.get('found_by')} only"
        for d in body.get("disagreements", [])
        if isinstance(d, dict)
    ]
    found = "; ".join(alone) if alone else f"{len(live)} the same"
    return Check(
        "agreement", ref, f"{len(live)} live = certificate", found, "WRONG" if alone else "ok"
    )


@dataclass(frozen=True, slots=True)
class _Clock:
    """Times as minutes from the scenario's start, for people reading the table."""

    epoch_ms: int

    def minutes(self, ms: int | None) -> str:
        return "open" if ms is None else f"t+{(ms - self.epoch_ms) / MINUTE_MS:.1f}"

    def span(self, start: int, end: int | None) -> str:
        return f"{self.minutes(start)}..{self.minutes(end)}"

    def breach(self, start: int, end: int | None, severity: str, suppressed: bool) -> str:
        return f"{self.span(start, end)} {severity}{' suppressed' if suppressed else ''}"
