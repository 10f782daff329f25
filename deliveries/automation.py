"""What moves a delivery without anyone asking: start and end detected from the GPS track,
closing once the final readings are in (or the grace period passed) with its certificate,
and a new certificate version when late readings changed its breaches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.store import Breach
from coldtrace.settings import Settings
from deliveries import geo
from deliveries.attach import delivery_segments, window
from deliveries.certificate import certificate_body
from deliveries.judge import judge
from deliveries.lifecycle import Action, State, close_due
from deliveries.models import Certificate, Delivery
from deliveries.source import ReadingSource
from deliveries.store import Conflict, Store, breach_links, wall_ms
from deliveries.trace import iso
from deliveries.window import Segment

log = logging.getLogger(__name__)

# GPS start detection looks this far before the planned pickup: vans leave early.
DETECT_LEAD_MS = 2 * 3600 * 1000
SWEEPER = "system:sweeper"


def stop_rule(settings: Settings) -> geo.StopRule:
    return geo.StopRule(settings.stop_speed_kmh, settings.stop_min_dwell_s)


def trace_properties(d: Delivery, start: int, end: int) -> dict[str, Any]:
    return {
        "delivery_id": d.id,
        "reference": d.reference,
        "customer_id": d.customer_id,
        "profile": d.profile,
        "vehicle_id": d.compartment.vehicle_id,
        "compartment": d.compartment.name,
        "state": d.state,
        "start": start,
        "end": end,
    }


def detect(store: Store, d: Delivery, source: ReadingSource, settings: Settings) -> None:
    """Start on leaving the pickup geofence, end on stopping inside the drop-off geofence
    (COLDTRACE_GEOFENCE_RADIUS_M, COLDTRACE_STOP_SPEED_KMH, COLDTRACE_STOP_MIN_DWELL_S)."""
    radius = settings.geofence_radius_m
    now = store.clock()
    if d.state == State.planned:
        segs = delivery_segments(store.session, d, d.planned_start_ms - DETECT_LEAD_MS, now)
        pickup = geo.Place(d.pickup_lat, d.pickup_lon)
        departed = geo.departure(source.readings(segs).positions, pickup, radius)
        if departed is not None:
            store.transition(d, Action.start, departed, "geofence")
    if d.state == State.in_transit and d.started_ms is not None:
        segs = delivery_segments(store.session, d, d.started_ms, now)
        dropoff = geo.Place(d.dropoff_lat, d.dropoff_lon)
        arrived = geo.arrival(source.readings(segs).positions, dropoff, radius, stop_rule(settings))
        if arrived is not None:
            store.transition(d, Action.deliver, arrived, "geofence")


def final_readings_in(store: Store, d: Delivery, source: ReadingSource, grace_s: int) -> str:
    """'' when the delivery may close, else why not."""
    if d.delivered_ms is None:
        return "not delivered"
    start, end = window(d, store.clock())
    devices = [s.device for s in delivery_segments(store.session, d, start, end)]
    last = source.last_reading_ms(devices)
    if close_due(d.delivered_ms, last, store.clock(), grace_s):
        return ""
    return (
        f"the final readings are not in yet (newest {'none' if last is None else iso(last)}, "
        f"delivered {iso(end)}): close once the logger's backlog arrived or after the grace "
        f"period (COLDTRACE_CLOSE_GRACE_S={grace_s})"
    )


def close(
    store: Store, d: Delivery, source: ReadingSource, settings: Settings, at: int | None = None
) -> None:
    """Close and issue the (signed) certificate; refused before the final readings are in."""
    if d.state == State.delivered:
        why_not = final_readings_in(store, d, source, settings.close_grace_s)
        if why_not:
            raise Conflict(why_not)
    store.transition(d, Action.close, at, "api")  # refused with its reason unless delivered
    issue_certificate(store, d, source, settings)


def issue_certificate(
    store: Store, d: Delivery, source: ReadingSource, settings: Settings
) -> Certificate | None:
    """Judge the delivery from its stored readings (deliveries.judge) and issue a version
    signed with the settings' key if that says something else than the current one (or there
    is none). A version on which the evaluation and the live rules stage disagree is logged
    at ERROR when issued (once: an unchanged body issues nothing)."""
    start, end = window(d, store.clock())
    evaluation, device_breaches = judge(store.session, d, source, settings, store.clock())
    verdict, body = certificate_body(trace_properties(d, start, end), evaluation, device_breaches)
    current = current_certificate(store, d)
    if current is not None and current.body == body | {"version": current.version}:
        return None
    issued = store.issue_certificate(
        d, verdict, body, settings.certificate_key, len(evaluation.disagreements)
    )
    if evaluation.disagreements:
        log.error(
            "delivery %s certificate version %d (%s): %d breach(es) found by only one of the "
            "evaluation of the stored readings and the live rules stage: %s",
            d.id,
            issued.version,
            verdict,
            len(evaluation.disagreements),
            "; ".join(r for r in evaluation.reasons if r.endswith(" only")),
        )
    return issued


def current_certificate(store: Store, d: Delivery) -> Certificate | None:
    return store.session.scalars(
        select(Certificate).where(
            Certificate.delivery_id == d.id, Certificate.superseded_ms.is_(None)
        )
    ).first()


def _segments(store: Store, d: Delivery) -> list[Segment]:
    start, end = window(d, store.clock())
    return delivery_segments(store.session, d, start, end)


def recertify(store: Store, source: ReadingSource, settings: Settings) -> int:
    """New certificate versions for closed deliveries whose breaches changed (opened late,
    ended, withdrawn) after their current certificate was issued, or whose compartment
    probes' readings in InfluxDB are not the ones it counted (a backlog that arrived after
    the close), for certificates issued within the late-data horizon
    (COLDTRACE_ALERTS_LATE_HORIZON_H); returns how many."""
    current = (
        select(Certificate.delivery_id, Certificate.issued_ms)
        .where(Certificate.superseded_ms.is_(None))
        .subquery()
    )
    changed = {
        row[1]
        for row in store.session.execute(
            breach_links(withdrawn=True)
            .join(current, current.c.delivery_id == Delivery.id)
            .where(Delivery.state == State.closed.value, Breach.updated_at > current.c.issued_ms)
        ).all()
    }
    horizon_ms = round(settings.alerts_late_horizon_h * 3_600_000)
    recent = store.session.execute(
        select(Delivery, Certificate.body)
        .join(Certificate, Certificate.delivery_id == Delivery.id)
        .where(
            Delivery.state == State.closed.value,
            Certificate.superseded_ms.is_(None),
            Certificate.issued_ms >= store.clock() - horizon_ms,
        )
    ).all()
    for d, body in recent:
        if d.id not in changed and source.temperature_count(_segments(store, d)) != body.get(
            "readings"
        ):
            changed.add(d.id)
    issued = 0
    for delivery_id in sorted(changed):
        d = store.session.get(Delivery, delivery_id)
        if d is not None and issue_certificate(store, d, source, settings) is not None:
            issued += 1
    return issued


def sweep(
    sessions: Callable[[], Session],
    source: ReadingSource,
    settings: Settings,
    clock: Callable[[], int] = wall_ms,
) -> int:
    """One pass over the open deliveries: detect starts and ends, close those whose final
    readings are in, re-certify closed ones whose breaches changed. Returns how many
    deliveries changed state or certificate."""
    changed = 0
    with sessions() as session:
        store = Store(session, SWEEPER, clock)
        due = session.scalars(
            select(Delivery)
            .where(
                Delivery.state.in_([State.planned, State.in_transit, State.delivered]),
                Delivery.planned_start_ms <= clock() + DETECT_LEAD_MS,
            )
            .order_by(Delivery.id)
        ).all()
        for d in due:
            before = d.state
            try:
                detect(store, d, source, settings)
                if d.state == State.delivered and not final_readings_in(
                    store, d, source, settings.close_grace_s
                ):
                    close(store, d, source, settings)
                session.commit()
            except Exception:
                session.rollback()
                log.exception("delivery %s: automatic transition failed", d.id)
                continue
            changed += d.state != before
        changed += recertify(store, source, settings)
        session.commit()
    return changed
