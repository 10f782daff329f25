"""Deliveries: create, list, get, lifecycle transitions (API, driver's app or GPS geofences),
trace, readings, breaches and certificates."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from coldtrace.api.auth import Admin, Anyone, Operators, Staff
from coldtrace.api.deps import AppSettings, DashboardLink, DbSession, Profiles, Source
from coldtrace.api.routes.breaches import breach_out
from coldtrace.api.routes.common import Limit, Offset, RowId, delivery_out, page, visible_delivery
from coldtrace.api.schemas import (
    BreachOut,
    CertificateOut,
    CertificateSummary,
    DeliveryIn,
    DeliveryOut,
    GeoJson,
    Page,
    QueryInstant,
    Series,
    TransitionIn,
    from_ms,
    to_ms,
)
from coldtrace.certificates.issue import Issuer, issue_certificate
from coldtrace.deliveries import automation, trace
from coldtrace.deliveries.attach import breach_mark, delivery_breaches, delivery_segments, window
from coldtrace.deliveries.lifecycle import Action, State
from coldtrace.deliveries.models import Certificate, Compartment, Delivery
from coldtrace.deliveries.source import ReadingSource
from coldtrace.deliveries.store import Conflict, DeliveryPlan, Store, wall_ms

router = APIRouter(prefix="/deliveries", tags=["deliveries"])

MaxPoints = Annotated[
    int | None,
    Query(ge=2, le=100_000, description="downsample to at most this many points per series"),
]


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
    body: DeliveryIn, session: DbSession, who: Staff, profiles: Profiles, link: DashboardLink
) -> DeliveryOut:
    row = Store(session, who.actor, profiles=profiles).create_delivery(plan_of(body))
    session.commit()
    return delivery_out(row, link)


@router.get("")
def list_deliveries(
    session: DbSession,
    who: Anyone,
    link: DashboardLink,
    state: State | None = None,
    customer_id: str | None = None,
    vehicle_id: str | None = None,
    reference: str | None = None,
    planned_after: Annotated[
        QueryInstant | None, Query(description="planned start >= this (naive: UTC)")
    ] = None,
    planned_before: Annotated[
        QueryInstant | None, Query(description="planned start before this (naive: UTC)")
    ] = None,
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
    items = [delivery_out(r[0], link) for r in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/{delivery_id}")
def get_delivery(
    delivery_id: RowId, session: DbSession, who: Anyone, link: DashboardLink
) -> DeliveryOut:
    """With its current certificate in brief: verdict and disagreements."""
    d = visible_delivery(session, who, delivery_id)
    current = session.scalars(
        select(Certificate).where(
            Certificate.delivery_id == d.id, Certificate.superseded_ms.is_(None)
        )
    ).first()
    summary = (
        None
        if current is None
        else CertificateSummary(
            id=current.id,
            version=current.version,
            verdict=current.verdict,
            disagreements=current.disagreements,
        )
    )
    return delivery_out(d, link).model_copy(update={"certificate": summary})


@router.delete("/{delivery_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_delivery(
    delivery_id: RowId, session: DbSession, who: Admin, settings: AppSettings
) -> None:
    """A closed or cancelled delivery and every version of its certificate, once the newest
    version is older than COLDTRACE_CERTIFICATE_RETENTION_DAYS (730); 409 before, saying
    until when (docs/certificates.md "Keeping certificates")."""
    d = visible_delivery(session, who, delivery_id)
    Store(session, who.actor).delete_delivery(d, settings.certificate_retention_days)
    session.commit()


@router.post("/{delivery_id}/transitions")
def transition(
    delivery_id: RowId,
    body: TransitionIn,
    session: DbSession,
    who: Staff,
    source: Source,
    settings: AppSettings,
    link: DashboardLink,
) -> DeliveryOut:
    """start, deliver, close (issues the certificate) or cancel."""
    d = visible_delivery(session, who, delivery_id)
    store = Store(session, who.actor)
    at = None if body.at is None else to_ms(body.at)
    if body.action is Action.close:
        automation.close(store, d, source, settings, Issuer(source, settings), at)
    else:
        automation.transition(store, d, body.action, at, body.source, source)
    session.commit()
    return delivery_out(d, link)


@router.post("/{delivery_id}/reevaluate")
def reevaluate(
    delivery_id: RowId, session: DbSession, who: Operators, source: Source, settings: AppSettings
) -> list[CertificateOut]:
    """Judge a closed delivery again from its stored readings (late readings, breaches the
    live stage changed): a different outcome is a new certificate version that supersedes
    the previous one (issued ones are never edited)."""
    d = visible_delivery(session, who, delivery_id)
    if d.state != State.closed:
        raise Conflict(f"only a closed delivery has a certificate to re-evaluate ({d.state})")
    issue_certificate(Store(session, who.actor), d, source, settings)
    session.commit()
    return certificates(delivery_id, session, who)


@router.post("/{delivery_id}/detect")
def detect(
    delivery_id: RowId,
    session: DbSession,
    who: Staff,
    source: Source,
    settings: AppSettings,
    link: DashboardLink,
) -> DeliveryOut:
    """Start and end from the GPS track now (the API also does it every
    COLDTRACE_DELIVERY_SWEEP_S): leaving the pickup geofence, then stopping inside the
    drop-off geofence (COLDTRACE_GEOFENCE_RADIUS_M, COLDTRACE_STOP_*)."""
    d = visible_delivery(session, who, delivery_id)
    automation.detect(Store(session, who.actor), d, source, settings)
    session.commit()
    return delivery_out(d, link)


def delivery_readings(
    session: Session, d: Delivery, source: ReadingSource
) -> tuple[int, int, trace.Readings]:
    """The delivery's window and what InfluxDB holds for it (from memory once it ended)."""
    start, end = window(d, wall_ms())
    segs = delivery_segments(session, d, start, end)
    ended = d.state not in (State.planned, State.in_transit)
    return start, end, source.finished_readings(segs) if ended else source.readings(segs)


@router.get(
    "/{delivery_id}/trace",
    response_model=GeoJson,
    responses={200: {"content": {"application/geo+json": {}}}},
)
def get_trace(
    delivery_id: RowId,
    session: DbSession,
    who: Anyone,
    source: Source,
    settings: AppSettings,
    max_points: MaxPoints = None,
) -> Response:
    """GeoJSON: the route (LineString with per-fix times), stops with dwell time and door
    openings, and each breach at the place it began (Points)."""
    d = visible_delivery(session, who, delivery_id)
    start, end, readings = delivery_readings(session, d, source)
    marks = [breach_mark(b) for b in delivery_breaches(session, d)]
    props = automation.trace_properties(d, start, end) | {
        "start": trace.iso(start),
        "end": trace.iso(end),
    }
    body = trace.geojson(props, readings, marks, automation.stop_rule(settings), max_points)
    return Response(orjson.dumps(body), media_type="application/geo+json")


@router.get("/{delivery_id}/readings", response_model=Series)
def get_readings(
    delivery_id: RowId,
    session: DbSession,
    who: Anyone,
    source: Source,
    max_points: MaxPoints = None,
) -> Response:
    """The compact series for charts: epoch-ms times with values per probe, and the route."""
    d = visible_delivery(session, who, delivery_id)
    start, end, readings = delivery_readings(session, d, source)
    body = trace.series({"delivery_id": d.id, "start": start, "end": end}, readings, max_points)
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/{delivery_id}/breaches")
def list_delivery_breaches(delivery_id: RowId, session: DbSession, who: Anyone) -> list[BreachOut]:
    d = visible_delivery(session, who, delivery_id)
    return [breach_out(b, d.id) for b in delivery_breaches(session, d)]


@router.get("/{delivery_id}/certificates")
def certificates(delivery_id: RowId, session: DbSession, who: Anyone) -> list[CertificateOut]:
    """Every version, newest first; only the newest is not superseded. Each is signed: check
    it with the key of GET /api/v1/certificates/public-key or `coldtrace certificates verify`."""
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
        signature=c.signature,
        key_id=c.key_id,
    )
