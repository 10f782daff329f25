"""What a delivery's certificate says: the evaluation of its stored readings
(alerts/evaluation.py), the device-level breaches of the live rules stage, and the facts
around them (issuer, customer, places and times in the customer's time zone, vehicle,
probes' calibrations, signer). Computed, never typed. Pure: the same evaluation, breaches
and context give the same body (docs/certificates.md lists its fields)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from alerts.evaluation import COMPLIANT, INCOMPLETE, NOT_COMPLIANT, Evaluation, ProbeKey, iso
from coldtrace.deliveries.trace import BreachMark
from coldtrace.profiles import Profile

__all__ = [
    "COMPLIANT",
    "INCOMPLETE",
    "MEANING",
    "NOT_COMPLIANT",
    "Calibration",
    "Context",
    "Place",
    "certificate_body",
]

# What the signature means (21 CFR 11.50(a)(3)): the signer vouches for the computation,
# not for having looked at the goods.
MEANING: Final = (
    "certification: the verdict and figures are computed from the delivery's stored "
    "readings against the limits stated"
)


@dataclass(frozen=True, slots=True)
class Place:
    """A pickup or drop-off: its address and position (decimal degrees)."""

    address: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Calibration:
    """One calibration record of a probe (the device registry's ``probe_calibration``):
    calibrated and due in epoch ms, the calibration certificate's reference."""

    calibrated: int
    due: int
    reference: str


@dataclass(frozen=True, slots=True)
class Context:
    """The facts around the evaluation, read by the caller (coldtrace.certificates.issue).
    ``timezone``: IANA name of the customer's zone; ``language``: "en" or "fr";
    ``calibrations``: every record of each compartment probe, any order; ``signed_at``:
    epoch ms of the signature."""

    issuer_name: str
    issuer_address: str
    signer_name: str
    customer_name: str
    language: str
    timezone: str
    vehicle_name: str
    pickup: Place
    dropoff: Place
    signed_at: int
    calibrations: Mapping[ProbeKey, Sequence[Calibration]] = field(default_factory=dict)


def local_iso(ts_ms: int | None, zone: str) -> str | None:
    """Epoch ms as ISO 8601 in ``zone`` with its offset, to the second."""
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(zone)).isoformat(timespec="seconds")


def calibration_status(
    records: Sequence[Calibration], start: int, end: int
) -> tuple[str, Calibration | None]:
    """("valid" | "expired" | "missing", the record judged): the probe's latest calibration
    at or before the window's ``start`` (epoch ms) must hold until its ``end``."""
    before = [c for c in records if c.calibrated <= start]
    if not before:
        return "missing", None
    latest = max(before, key=lambda c: (c.calibrated, c.due))
    return ("valid" if latest.due >= end else "expired"), latest


def _calibration(key: ProbeKey, e: Evaluation, ctx: Context) -> dict[str, Any]:
    status, record = calibration_status(ctx.calibrations.get(key, ()), e.start, e.end)
    return {
        "status": status,
        "calibrated": None if record is None else iso(record.calibrated),
        "due": None if record is None else iso(record.due),
        "reference": None if record is None else record.reference,
    }


def _calibration_reasons(probes: Sequence[Mapping[str, Any]]) -> list[str]:
    reasons = []
    for p in probes:
        c = p["calibration"]
        who = f"{p['device']}/{p['probe']}"
        if c["status"] == "expired":
            reasons.append(f"calibration of {who} expired {c['due']} ({c['reference']})")
        elif c["status"] == "missing":
            reasons.append(f"no calibration of {who} before the delivery")
    return reasons


def judged_against(profile: Profile) -> dict[str, Any]:
    """The profile's limits as the certificate states them (C, min), with their source."""
    return {
        "profile": profile.id,
        "name": profile.name,
        "low_c": profile.low_c,
        "high_c": profile.high_c,
        "delay_min": profile.delay_min,
        "critical_low_c": profile.critical_low_c,
        "critical_high_c": profile.critical_high_c,
        "critical_after_min": profile.critical_after_min,
        "cumulative": None if profile.cumulative is None else profile.cumulative.model_dump(),
        "mkt": None if profile.mkt is None else profile.mkt.model_dump(),
        "door_open_max_min": profile.door_open_max_min,
        "fault_delay_min": profile.fault_delay_min,
        "regulation": profile.regulation,
        "calibration_required": profile.calibration_required,
    }


def _recording_interval_s(e: Evaluation) -> float | None:
    """The slowest probe's sampling interval (s): how often the record has a reading."""
    return max((p.interval_ms / 1000 for p in e.probes), default=None)


def _at(place: Place, ts: int, zone: str) -> dict[str, Any]:
    return {
        "address": place.address,
        "lat": place.lat,
        "lon": place.lon,
        "time": local_iso(ts, zone),
    }


def _place(e: Evaluation, i: int) -> dict[str, float] | None:
    where = e.breaches[i].where
    return None if where is None else {"lat": where.lat, "lon": where.lon}


def certificate_body(
    delivery: Mapping[str, Any],
    e: Evaluation,
    ctx: Context,
    device_breaches: Sequence[BreachMark] = (),
) -> tuple[str, dict[str, Any]]:
    """(verdict, body) for the delivery's window ``e.start``..``e.end``. ``device_breaches``:
    the live stage's breaches of the delivery's devices themselves (probe "": silence,
    door), listed as they are; ``e`` already counted them for its verdict. The verdict is
    the evaluation's, made ``incomplete`` from ``compliant`` by a probe whose calibration is
    expired or missing when the profile requires calibration."""
    breaches: list[dict[str, Any]] = []
    for i, b in enumerate(e.breaches):
        r = b.record
        breaches.append(
            {
                "id": e.matched.get((b.device, b.probe, r.rule, r.start)),
                "device": b.device,
                "probe": b.probe,
                "rule": r.rule,
                "severity": r.severity,
                "start": iso(r.start),
                "end": iso(r.end),
                "duration_min": b.duration_min,
                "peak_c": r.peak,
                "limit_c": r.limit_c,
                "degree_minutes": round(r.degree_minutes, 2),
                "mkt_c": b.mkt_c,
                "suppressed": r.suppressed,
                "where": _place(e, i),
            }
        )
    for m in device_breaches:
        breaches.append(
            {
                "id": m.id,
                "device": m.device,
                "probe": m.probe,
                "rule": m.rule,
                "severity": m.severity,
                "start": iso(m.start),
                "end": iso(m.end),
                "duration_min": None if m.end is None else round((m.end - m.start) / 60_000, 2),
                "peak_c": m.extra.get("peak"),
                "limit_c": m.extra.get("limit_c"),
                "degree_minutes": m.extra.get("degree_minutes", 0.0),
                "mkt_c": None,
                "suppressed": bool(m.extra.get("suppressed")),
                "where": None,
            }
        )
    breaches.sort(key=lambda b: (b["start"], b["device"], b["probe"], b["rule"]))
    probes = [
        {
            "device": p.device,
            "probe": p.probe,
            "readings": p.readings,
            "faults": p.faults,
            "first_reading": iso(p.first),
            "last_reading": iso(p.last),
            "min_c": p.min_c,
            "max_c": p.max_c,
            "mean_c": p.mean_c,
            "in_range_min": p.in_range_min,
            "out_of_range_min": p.out_of_range_min,
            "in_range_pct": p.in_range_pct,
            "mkt_c": p.mkt_c,
            "interval_s": p.interval_ms / 1000,
            "calibration": _calibration((p.device, p.probe), e, ctx),
        }
        for p in e.probes
    ]
    verdict, reasons = e.verdict, list(e.reasons)
    if e.profile.calibration_required:
        uncalibrated = _calibration_reasons(probes)
        reasons += uncalibrated
        if uncalibrated and verdict == COMPLIANT:
            verdict = INCOMPLETE
    return verdict, {
        **delivery,
        "start": iso(e.start),
        "end": iso(e.end),
        "verdict": verdict,
        "reasons": reasons,
        "profile": e.profile.id,
        "judged_against": judged_against(e.profile),
        "issuer": {"name": ctx.issuer_name, "address": ctx.issuer_address},
        "customer": {"name": ctx.customer_name, "language": ctx.language},
        "timezone": ctx.timezone,
        "pickup": _at(ctx.pickup, e.start, ctx.timezone),
        "dropoff": _at(ctx.dropoff, e.end, ctx.timezone),
        "vehicle": ctx.vehicle_name,
        "readings": e.readings,
        "first_reading": iso(e.first),
        "last_reading": iso(e.last),
        "recording_interval_s": _recording_interval_s(e),
        "min_c": e.min_c,
        "max_c": e.max_c,
        "mean_c": e.mean_c,
        "in_range_min": e.in_range_min,
        "out_of_range_min": e.out_of_range_min,
        "mkt_c": e.mkt_c,
        "probes": probes,
        "silent_probes": [{"device": d, "probe": p} for d, p in e.silent],
        "gaps": [
            {
                "device": g.device,
                "probe": g.probe,
                "start": iso(g.start),
                "end": iso(g.end),
                "minutes": g.minutes,
            }
            for g in e.gaps
        ],
        "breaches": breaches,
        "disagreements": [
            {
                "found_by": d.found_by,
                "device": d.device,
                "probe": d.probe,
                "rule": d.rule,
                "start": iso(d.start),
                "live_breach_id": d.live_id,
            }
            for d in e.disagreements
        ],
        "signer": {
            "name": ctx.signer_name,
            "signed_at": iso(ctx.signed_at),
            "meaning": MEANING,
        },
    }
