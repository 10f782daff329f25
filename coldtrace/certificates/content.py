"""What a delivery's certificate says: the evaluation of its stored readings
(alerts/evaluation.py) and the device-level breaches of the live rules stage. Pure: the same
evaluation and breaches give the same body (docs/certificates.md lists its fields)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alerts.evaluation import COMPLIANT, NOT_COMPLIANT, Evaluation, iso
from deliveries.trace import BreachMark

__all__ = ["COMPLIANT", "NOT_COMPLIANT", "certificate_body"]


def _place(e: Evaluation, i: int) -> dict[str, float] | None:
    where = e.breaches[i].where
    return None if where is None else {"lat": where.lat, "lon": where.lon}


def certificate_body(
    delivery: Mapping[str, Any],
    e: Evaluation,
    device_breaches: Sequence[BreachMark] = (),
) -> tuple[str, dict[str, Any]]:
    """(verdict, body) for the delivery's window ``e.start``..``e.end``. ``device_breaches``:
    the live stage's breaches of the delivery's devices themselves (probe "": silence,
    door), listed as they are; ``e`` already counted them for its verdict."""
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
    return e.verdict, {
        **delivery,
        "start": iso(e.start),
        "end": iso(e.end),
        "verdict": e.verdict,
        "reasons": e.reasons,
        "profile": e.profile.id,
        "readings": e.readings,
        "first_reading": iso(e.first),
        "last_reading": iso(e.last),
        "min_c": e.min_c,
        "max_c": e.max_c,
        "mean_c": e.mean_c,
        "in_range_min": e.in_range_min,
        "out_of_range_min": e.out_of_range_min,
        "mkt_c": e.mkt_c,
        "probes": [
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
            }
            for p in e.probes
        ],
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
    }
