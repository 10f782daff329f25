"""A delivery judged from its stored readings: every reading of its compartment probes in its
window, read back from InfluxDB, through the one evaluation (alerts/evaluation.py), compared
with the breaches the live rules stage stored for it."""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from pathlib import Path

from sqlalchemy.orm import Session

from alerts.evaluation import Evaluation, LiveBreach, Position, ProbeKey, evaluate, locate
from alerts.rules import Window
from coldtrace.deliveries.attach import breach_mark, delivery_breaches, delivery_segments, window
from coldtrace.deliveries.models import Delivery
from coldtrace.deliveries.source import ReadingSource
from coldtrace.deliveries.store import Conflict
from coldtrace.deliveries.trace import BreachMark
from coldtrace.profiles import Profile, load_profiles
from coldtrace.settings import Settings


@cache
def _profiles(user_file: Path | None) -> dict[str, Profile]:
    return load_profiles(user_file)


def profile_of(settings: Settings, profile_id: str) -> Profile:
    profiles = _profiles(settings.alerts_profiles_file)
    if profile_id not in profiles:
        known = ", ".join(sorted(profiles))
        raise Conflict(f"unknown product profile {profile_id!r} (one of {known})")
    return profiles[profile_id]


def suppress_windows(settings: Settings) -> dict[str, list[Window]]:
    """COLDTRACE_ALERTS_SUPPRESS_WINDOWS in epoch ms, per device (as the live stage reads it)."""
    return {
        device: [(round(a.timestamp() * 1000), round(b.timestamp() * 1000)) for a, b in spans]
        for device, spans in settings.alerts_suppress_windows.items()
    }


def judge(
    session: Session, d: Delivery, source: ReadingSource, settings: Settings, now_ms: int
) -> tuple[Evaluation, list[BreachMark]]:
    """The evaluation of the delivery's window (with where each breach began), and the live
    stage's device-level breaches (probe "": silence, door) to list beside it.

    Live probe breaches are compared when they began inside the span their probe measured
    the compartment: one that began before the delivery belongs to the stretch before it
    (the live stage closes it where the delivery starts and judges the delivery afresh)."""
    start, end = window(d, now_ms)
    segs = delivery_segments(session, d, start, end)
    spans: dict[ProbeKey, tuple[int, int]] = {}
    for s in segs:
        lo, hi = spans.get((s.device, s.probe), (s.start, s.end))
        spans[(s.device, s.probe)] = (min(lo, s.start), max(hi, s.end))
    rows = delivery_breaches(session, d)
    live = [
        LiveBreach(b.device, b.probe, b.rule, b.start_ts, b.suppressed, b.id)
        for b in rows
        if not b.probe
        or (
            (b.device, b.probe) in spans
            and spans[(b.device, b.probe)][0] <= b.start_ts <= spans[(b.device, b.probe)][1]
        )
    ]
    e = evaluate(
        source.probe_samples(segs),
        profile_of(settings, d.profile),
        suppress_windows(settings),
        start,
        end,
        spans=spans,
        live=live,
    )
    fixes: dict[str, list[Position]] = defaultdict(list)
    for b in e.breaches:
        fix = source.fix_at(b.device, b.record.start)
        if fix is not None:
            fixes[b.device].append(fix)
    for device_fixes in fixes.values():
        device_fixes.sort(key=lambda f: f.ts)
    return locate(e, fixes), [breach_mark(b) for b in rows if not b.probe]
