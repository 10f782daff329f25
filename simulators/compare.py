"""Expected against found: a placed scenario's expected outcome beside what the pipeline
reported through the API (breach and certificate bodies as it returns them). Pure.

A found breach matches an expected one of the same van, probe and rule whose start is within
one sampling interval of it; it is then right when its end (same tolerance; or both still
open), severity and suppression are the expected ones. What stays unmatched is MISSED
(expected only) or SPURIOUS (found only). Data gaps are matched the same way on the newest
certificate, whose verdict and number of versions are compared as they are. For each
delivery the live breaches (GET /deliveries/N/breaches) must be the certificate's, and the
certificate must report no disagreement of its own. Last, ingest and the API must be healthy:
a probe the rules stage could not judge, or a certificate disagreeing with the live rules,
fails their /health.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from simulators.model import MINUTE_MS
from simulators.scenario import Placed

Body = dict[str, Any]


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
    start: str  # t+0, ISO 8601
    checks: list[Check] = field(default_factory=list)

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
        }


@dataclass(frozen=True, slots=True)
class DeliveryFound:
    certificates: list[Body]  # every version, newest first
    live: list[Body]  # the live breaches attached to it
    delivery: Body = field(default_factory=dict)  # the delivery itself


@dataclass(frozen=True, slots=True)
class Found:
    breaches: list[Body]  # every breach stored for the scenario's devices (not withdrawn)
    deliveries: dict[str, DeliveryFound]  # by the scenario's delivery ref
    # what failing health checks said after the run, per part (ingest, api); [] when healthy
    health: dict[str, list[str]] = field(default_factory=dict)


def ms(value: str | None) -> int | None:
    """An ISO 8601 time of the API as epoch ms."""
    return None if value is None else round(datetime.fromisoformat(value).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class _Clock:
    """Times as minutes from the scenario's start, for people reading the table."""

    epoch_ms: int

    def at(self, t: int | None) -> str:
        return "open" if t is None else f"t+{(t - self.epoch_ms) / MINUTE_MS:.1f}"

    def span(self, start: int | None, end: int | None) -> str:
        return f"{self.at(start)}..{self.at(end)}"

    def breach(self, b: Body) -> str:
        extra = " suppressed" if b.get("suppressed") else ""
        return f"{self.span(ms(b['start']), ms(b.get('end')))} {b['severity']}{extra}"


def compare(placed: Placed, found: Found) -> list[Check]:
    sc = placed.scenario
    clock = _Clock(placed.epoch_ms)
    tol = {v.id: round(v.interval_s * 1000) for v in sc.fleet}
    van_of = {placed.device(v.id): v.id for v in sc.fleet}
    rest = list(found.breaches)
    checks: list[Check] = []
    for e in sc.expected.breaches:
        start = placed.at(e.start_min)
        end = None if e.end_min is None else placed.at(e.end_min)
        wanted = f"{clock.span(start, end)} {e.severity}{' suppressed' if e.suppressed else ''}"
        subject = f"{e.van}/{e.probe or 'device'} {e.rule}"
        twin = next(
            (
                b
                for b in rest
                if (van_of.get(b["device"]), b["probe"], b["rule"]) == (e.van, e.probe, e.rule)
                and abs((ms(b["start"]) or 0) - start) <= tol[e.van]
            ),
            None,
        )
        if twin is None:
            checks.append(Check("breach", subject, wanted, "-", "MISSED"))
            continue
        rest.remove(twin)
        got_end = ms(twin.get("end"))
        right_end = (
            got_end is None
            if end is None
            else got_end is not None and abs(got_end - end) <= tol[e.van]
        )
        right = right_end and (twin["severity"], twin["suppressed"]) == (e.severity, e.suppressed)
        checks.append(Check("breach", subject, wanted, clock.breach(twin), _ok(right)))
    for b in rest:
        subject = f"{van_of.get(b['device'], b['device'])}/{b['probe'] or 'device'} {b['rule']}"
        checks.append(Check("breach", subject, "-", clock.breach(b), "SPURIOUS"))
    if not checks:
        checks.append(Check("breach", "every van", "none", "none", "ok"))
    for d in placed.deliveries:
        checks += _delivery(
            placed, d.spec.ref, found.deliveries[d.spec.ref], clock, tol[d.spec.van]
        )
    for part, reasons in found.health.items():
        said = "; ".join(reasons) if reasons else "ok"
        checks.append(Check("health", part, "ok", said, _ok(not reasons)))
    return checks


def _ok(right: bool) -> str:
    return "ok" if right else "WRONG"


def _delivery(
    placed: Placed, ref: str, found: DeliveryFound, clock: _Clock, tol: int
) -> list[Check]:
    sc = placed.scenario
    newest = found.certificates[0] if found.certificates else None
    verdict = sc.expected.verdicts[ref]
    got = newest["verdict"] if newest else "(no certificate)"
    checks = [Check("verdict", ref, verdict, got, _ok(got == verdict))]
    times = sc.expected.detected.get(ref)
    if times is not None:
        want = (placed.at(times.start_min), placed.at(times.deliver_min))
        got_times = (ms(found.delivery.get("started")), ms(found.delivery.get("delivered")))
        right = all(
            g is not None and abs(g - w) <= tol for g, w in zip(got_times, want, strict=True)
        )
        checks.append(Check("detected", ref, clock.span(*want), clock.span(*got_times), _ok(right)))
    versions = sc.expected.certificate_versions.get(ref)
    if versions is not None:
        n = len(found.certificates)
        checks.append(Check("versions", ref, str(versions), str(n), _ok(n == versions)))
    body: Body = newest["body"] if newest else {}
    gaps = [g for g in body.get("gaps", []) if isinstance(g, dict)]
    for e in (g for g in sc.expected.gaps if g.delivery == ref):
        start, end = placed.at(e.start_min), placed.at(e.end_min)
        key = (placed.device(e.van), e.probe)
        twin = next(
            (
                g
                for g in gaps
                if (g.get("device"), g.get("probe")) == key
                and abs((ms(g.get("start")) or 0) - start) <= tol
                and abs((ms(g.get("end")) or 0) - end) <= tol
            ),
            None,
        )
        if twin is not None:
            gaps.remove(twin)
        got_span = "-" if twin is None else clock.span(ms(twin["start"]), ms(twin["end"]))
        result = "MISSED" if twin is None else "ok"
        checks.append(
            Check("gap", f"{ref} {e.van}/{e.probe}", clock.span(start, end), got_span, result)
        )
    for g in gaps:
        span = clock.span(ms(g.get("start")), ms(g.get("end")))
        checks.append(
            Check("gap", f"{ref} {g.get('device')}/{g.get('probe')}", "-", span, "SPURIOUS")
        )
    checks.append(_agreement(ref, found.live, body, tol))
    return checks


def _agreement(ref: str, live: list[Body], body: Body, tol: int) -> Check:
    """Whether the live breaches of a delivery and its certificate's are the same ones (same
    device, probe, rule, start within one sampling interval), and the certificate found no
    disagreement itself."""
    certified = [b for b in body.get("breaches", []) if isinstance(b, dict)]

    def key(b: Body) -> tuple[str, str, str]:
        return (b.get("device", ""), b.get("probe", ""), b.get("rule", ""))

    alone: list[str] = []
    for b in live:
        twin = next(
            (
                c
                for c in certified
                if key(c) == key(b)
                and abs((ms(c.get("start")) or 0) - (ms(b["start"]) or 0)) <= tol
            ),
            None,
        )
        if twin is None:
            alone.append(f"live {b['probe'] or 'device'} {b['rule']} only")
        else:
            certified.remove(twin)
    alone += [f"certificate {c.get('probe') or 'device'} {c.get('rule')} only" for c in certified]
    alone += [
        f"certificate says {d.get('rule')} on {d.get('probe') or 'device'} found by "
        f"{d.get('found_by')} only"
        for d in body.get("disagreements", [])
        if isinstance(d, dict)
    ]
    found = "; ".join(alone) if alone else f"{len(live)} the same"
    return Check("agreement", ref, f"{len(live)} live = certificate", found, _ok(not alone))
