"""Deliveries: create, list, get, lifecycle transitions (API, driver's app or GPS geofences),
trace, readings, breaches and certificates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response, status
from sqlalchemy import select

from api.auth import Anyone, Operators, Staff
from api.deps import AppSettings, DbSession, Profiles, Source
from api.routes.breaches import breach_out
from api.routes.common import Limit, Offset, delivery_out, page, visible_delivery
from api.schemas import (
    BreachOut,
    CertificateOut,
    DeliveryIn,
    DeliveryOut,
    GeoJson,
    Page,
    Series,
    TransitionIn,
    from_ms,
    to_ms,
)
from coldtrace.settings import Settings
from deliveries import geo, trace
from deliveries.attach import breach_mark, delivery_breaches, delivery_segments, window
from deliveries.certificate import certificate_body
from deliveries.lifecycle import Action, State, close_due
from deliveries.models import Certificate, Compartment, Delivery
from deliveries.source import ReadingSource
from deliveries.store import Conflict, DeliveryPlan, Store, wall_ms

router = APIRouter(prefix="/deliveries", tags=["deliveries"])

MaxPoints = Annotated[
    int | None,
    Query(ge=2, le=100_000, description="downsample to at most this many points per series"),
]
# GPS start detection looks this far before the planned pickup: vans leave early.
DETECT_LEAD_MS = 2 * 3600 * 1000


def stop_rule(settings: Settings) -> geo.StopRule:
    return geo.StopRule(settings.stop_speed_kmh, settings.stop_min_dwell_s)


def plan_of(body: DeliveryIn) -> DeliveryPlan:
    return DeliveryPlan(
        customer_id=body.customer_id,
        vehicle_id=body.vehicle_id,
        compartment=body.compartment,
        pickup_address=body.pickup.address,
        pickup_lat=body.pickup.lat,
        pickup_lon=body.pickup.lon,
        dropoff_address=body.dropoff.address,
        dropoff_lat=body.dropoff.lat,
        dropoff_lon=body.dropoff.lon,
        planned_start_ms=to_ms(body.planned_start),
        planned_end_ms=to_ms(body.planned_end),
        profile=body.profile,
        reference=body.reference,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def create_delivery(
    body: DeliveryIn, session: DbSession, who: Staff, profiles: Profiles
) -> DeliveryOut:
    row = Store(session, who.actor, profiles=profiles).create_delivery(plan_of(body))
    session.commit()
    return delivery_out(row)


@router.get("")
def list_deliveries(
    session: DbSession,
    who: Anyone,
    state: State | None = None,
    customer_id: str | None = None,
    vehicle_id: str | None = None,
    reference: str | None = None,
    planned_after: Annotated[datetime | None, Query(description="planned start >= this")] = None,
    planned_before: Annotated[datetime | None, Query(description="planned start before")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[DeliveryOut]:
    query = select(Delivery).order_by(Delivery.planned_start_ms.desc(), Delivery.id.desc())
    if who.customer_id is not None:  # a customer's list holds its own deliveries, whatever asked
        query = query.where(Delivery.customer_id == who.customer_id)
    if customer_id is not None:
        query = query.where(Delivery.customer_id == customer_id)
    if state is not None:
        query = query.where(Delivery.state == state.value)
    if vehicle_id is not None:
        query = query.join(Compartment).where(Compartment.vehicle_id == vehicle_id)
    if reference is not None:
        query = query.where(Delivery.reference == reference)
    if planned_after is not None:
        query = query.where(Delivery.planned_start_ms >= to_ms(planned_after))
    if planned_before is not None:
        query = query.where(Delivery.planned_start_ms < to_ms(planned_before))
    rows, total = page(session, query, limit, offset)
    return Page(items=[delivery_out(r[0]) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{delivery_id}")
def get_delivery(delivery_id: int, session: DbSession, who: Anyone) -> DeliveryOut:
    return delivery_out(visible_delivery(session, who, delivery_id))


@router.post("/{delivery_id}/transitions")
def transition(
    delivery_id: int,
    body: TransitionIn,
    session: DbSession,
    who: Staff,
    source: Source,
    settings: AppSettings,
) -> DeliveryOut:
    """start, deliver, close (issues the certificate) or cancel."""
    d = visible_delivery(session, who, delivery_id)
    store = Store(session, who.actor)
    at = None if body.at is None else to_ms(body.at)
    if body.action is Action.close:
        close(store, d, source, settings, at)
    else:
        store.transition(d, body.action, at, body.source)
    session.commit()
    return delivery_out(d)


def close(
    store: Store, d: Delivery, source: ReadingSource, settings: Settings, at: int | None
) -> None:
    if d.state != State.delivered or d.delivered_ms is None:
        store.transition(d, Action.close, at, "api")  # refused with the reason
        return
    start, end = window(d, store.clock())
    devices = [s.device for s in delivery_segments(store.session, d, start, end)]
    last = source.last_reading_ms(devices)
    if not close_due(d.delivered_ms, last, store.clock(), settings.close_grace_s):
        raise Conflict(
            "the final readings are not in yet (newest "
            f"{'none' if last is None else trace.iso(last)}, delivered {trace.iso(end)}): "
            f"close once the logger's backlog arrived or after the grace period "
            f"(COLDTRACE_CLOSE_GRACE_S={settings.close_grace_s})"
        )
    store.transition(d, Action.close, at, "api")
    issue_certificate(store, d)


def issue_certificate(store: Store, d: Delivery) -> Certificate | None:
    """Issue a version if the breaches say something else than the current one (or none)."""
    start, end = window(d, store.clock())
    marks = [breach_mark(b) for b in delivery_breaches(store.session, d)]
    verdict, body = certificate_body(trace_properties(d, start, end), start, end, marks)
    current = store.session.scalars(
        select(Certificate).where(
            Certificate.delivery_id == d.id, Certificate.superseded_ms.is_(None)
        )
    ).first()
    if current is not None and current.body == body:
        return None
    return store.issue_certificate(d, verdict, body)


@router.post("/{delivery_id}/reevaluate")
def reevaluate(delivery_id: int, session: DbSession, who: Operators) -> list[CertificateOut]:
    """After late readings: a closed delivery whose breaches changed gets a new certificate
    version that supersedes the previous one (issued ones are never edited)."""
    d = visible_delivery(session, who, delivery_id)
    if d.state != State.closed:
        raise Conflict(f"only a closed delivery has a certificate to re-evaluate ({d.state})")
    issue_certificate(Store(session, who.actor), d)
    session.commit()
    return certificates(delivery_id, session, who)


@router.post("/{delivery_id}/detect")
def detect(
    delivery_id: int, session: DbSession, who: Staff, source: Source, settings: AppSettings
) -> DeliveryOut:
    """Start and end from the GPS track: leaving the pickup geofence, then stopping inside
    the drop-off geofence (COLDTRACE_GEOFENCE_RADIUS_M, COLDTRACE_STOP_*)."""
    d = visible_delivery(session, who, delivery_id)
    store = Store(session, who.actor)
    radius = settings.geofence_radius_m
    if d.state == State.planned:
        lo = d.planned_start_ms - DETECT_LEAD_MS
        positions = source.readings(delivery_segments(session, d, lo, store.clock())).positions
        departed = geo.departure(positions, geo.Place(d.pickup_lat, d.pickup_lon), radius)
        if departed is not None:
            store.transition(d, Action.start, departed, "geofence")
    if d.state == State.in_transit and d.started_ms is not None:
        segs = delivery_segments(session, d, d.started_ms, store.clock())
        positions = source.readings(segs).positions
        dropoff = geo.Place(d.dropoff_lat, d.dropoff_lon)
        arrived = geo.arrival(positions, dropoff, radius, stop_rule(settings))
        if arrived is not None:
            store.transition(d, Action.deliver, arrived, "geofence")
    session.commit()
    return delivery_out(d)


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


@router.get(
    "/{delivery_id}/trace",
    response_model=GeoJson,
    responses={200: {"content": {"application/geo+json": {}}}},
)
def get_trace(
    delivery_id: int,
    session: DbSession,
    who: Anyone,
    source: Source,
    settings: AppSettings,
    max_points: MaxPoints = None,
) -> Response:
    """GeoJSON: the route (LineString with per-fix times), stops with dwell time and door
    openings, and each breach at the place it began (Points)."""
    d = visible_delivery(session, who, delivery_id)
    start, end = window(d, wall_ms())
    readings = source.readings(delivery_segments(session, d, start, end))
    marks = [breach_mark(b) for b in delivery_breaches(session, d)]
    props = trace_properties(d, start, end) | {"start": trace.iso(start), "end": trace.iso(end)}
    body = trace.geojson(props, readings, marks, stop_rule(settings), max_points)
    return Response(orjson.dumps(body), media_type="application/geo+json")


@router.get("/{delivery_id}/readings", response_model=Series)
def get_readings(
    delivery_id: int,
    session: DbSession,
    who: Anyone,
    source: Source,
    max_points: MaxPoints = None,
) -> Response:
    """The compact series for charts: epoch-ms times with values per probe, and the route."""
    d = visible_delivery(session, who, delivery_id)
    start, end = window(d, wall_ms())
    readings = source.readings(delivery_segments(session, d, start, end))
    body = trace.series({"delivery_id": d.id, "start": start, "end": end}, readings, max_points)
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/{delivery_id}/breaches")
def list_delivery_breaches(delivery_id: int, session: DbSession, who: Anyone) -> list[BreachOut]:
    d = visible_delivery(session, who, delivery_id)
    return [breach_out(b, d.id) for b in delivery_breaches(session, d)]


@router.get("/{delivery_id}/certificates")
def certificates(delivery_id: int, session: DbSession, who: Anyone) -> list[CertificateOut]:
    """Every version, newest first; only the newest is not superseded."""
    visible_delivery(session, who, delivery_id)
    rows = session.scalars(
        select(Certificate)
        .where(Certificate.delivery_id == delivery_id)
        .order_by(Certificate.version.desc())
    )
    return [certificate_out(c) for c in rows]


def certificate_out(c: Certificate) -> CertificateOut:
    return CertificateOut(
        id=c.id,
        delivery_id=c.delivery_id,
        version=c.version,
        issued=from_ms(c.issued_ms),
        superseded=from_ms(c.superseded_ms),
        verdict=c.verdict,
        body=c.body,
    )
