"""What moves a delivery without anyone asking: start and end detected from the GPS track,
closing once the final readings are in (or the grace period passed) with its certificate,
and a new certificate version when late readings changed its breaches. Certificates are
issued by a ``Certifier`` the entry point passes in (coldtrace.certificates.issue.Issuer):
certificates sit above deliveries."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from coldtrace.deliveries import geo
from coldtrace.deliveries.attach import delivery_segments, window
from coldtrace.deliveries.lifecycle import Action, State, close_due
from coldtrace.deliveries.measurement import transit_line
from coldtrace.deliveries.models import Delivery
from coldtrace.deliveries.source import ReadingSource
from coldtrace.deliveries.store import Conflict, Store, wall_ms
from coldtrace.deliveries.trace import iso
from coldtrace.settings import Settings

log = logging.getLogger(__name__)

# GPS start detection looks this far before the planned pickup: vans leave early.
DETECT_LEAD_MS = 2 * 3600 * 1000
SWEEPER = "system:sweeper"


class Certifier(Protocol):
    """Issues certificates (coldtrace.certificates.issue.Issuer)."""

    def issue(self, store: Store, d: Delivery) -> object:
        """Judge a closed delivery and issue a new version if it says something new."""

    def recertify(self, store: Store) -> int:
        """New versions for closed deliveries whose readings or breaches changed; how many."""


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


def transition(
    store: Store, d: Delivery, action: Action, at: int | None, why: str, source: ReadingSource
) -> None:
    """``store.transition``, and the delivery going in or out of transit written to
    InfluxDB (deliveries.measurement) before the store commits: a transition InfluxDB did
    not take is not made either."""
    before = d.state
    store.transition(d, action, at, why)
    line = transit_line(d, before)
    if line is not None:
        source.influx.write(line.encode(), precision="ns")


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
            transition(store, d, Action.start, departed, "geofence", source)
    if d.state == State.in_transit and d.started_ms is not None:
        segs = delivery_segments(store.session, d, d.started_ms, now)
        dropoff = geo.Place(d.dropoff_lat, d.dropoff_lon)
        arrived = geo.arrival(source.readings(segs).positions, dropoff, radius, stop_rule(settings))
        if arrived is not None:
            transition(store, d, Action.deliver, arrived, "geofence", source)


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
    store: Store,
    d: Delivery,
    source: ReadingSource,
    settings: Settings,
    certifier: Certifier,
    at: int | None = None,
) -> None:
    """Close and issue the (signed) certificate; refused before the final readings are in."""
    if d.state == State.delivered:
        why_not = final_readings_in(store, d, source, settings.close_grace_s)
        if why_not:
            raise Conflict(why_not)
    store.transition(d, Action.close, at, "api")  # refused with its reason unless delivered
    certifier.issue(store, d)


def sweep(
    sessions: Callable[[], Session],
    source: ReadingSource,
    settings: Settings,
    certifier: Certifier,
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
                    close(store, d, source, settings, certifier)
                session.commit()
            except Exception:
                session.rollback()
                log.exception("delivery %s: automatic transition failed", d.id)
                continue
            changed += d.state != before
        changed += certifier.recertify(store)
        session.commit()
    return changed
