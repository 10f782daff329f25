"""Certificates by id and the key they are signed with, the fleet's live state and the audit
log."""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from coldtrace import signing
from coldtrace.api.auth import Anyone, Operators, Principal, Staff
from coldtrace.api.deps import AppSettings, DbSession, Influx, Source
from coldtrace.api.pipeline import ingest_state
from coldtrace.api.routes.common import Limit, Offset, RowId, page, visible_delivery
from coldtrace.api.routes.deliveries import certificate_out
from coldtrace.api.schemas import (
    AuditOut,
    CertificateOut,
    FleetVehicle,
    LivePosition,
    Page,
    PublicKeyOut,
    from_ms,
)
from coldtrace.breaches import Breach
from coldtrace.certificates.document import NoDocument
from coldtrace.certificates.pdf import render_pdf
from coldtrace.certificates.render import version_document
from coldtrace.deliveries.lifecycle import State
from coldtrace.deliveries.models import (
    Assignment,
    AuditEntry,
    Certificate,
    Compartment,
    Delivery,
    Vehicle,
)
from coldtrace.deliveries.store import Conflict, NotFound
from coldtrace.influx import InfluxClient

router = APIRouter()


# Declared before /certificates/{certificate_id}, which would otherwise take the path.
@router.get("/certificates/public-key", tags=["certificates"])
def certificate_public_key(settings: AppSettings, who: Anyone) -> PublicKeyOut:
    """The Ed25519 public key certificates are signed with, for checking them offline."""
    public = settings.certificate_key.public_key()
    return PublicKeyOut(key_id=signing.key_id(public), pem=signing.public_key_pem(public))


def visible_certificate(session: Session, who: Principal, certificate_id: int) -> Certificate:
    """The version, if the caller may see its delivery (else 404, as if it did not exist)."""
    row = session.get(Certificate, certificate_id)
    if row is None:
        raise NotFound("certificate", certificate_id)
    try:
        visible_delivery(session, who, row.delivery_id)
    except NotFound:
        raise NotFound("certificate", certificate_id) from None
    return row


@router.get("/certificates/{certificate_id}", tags=["certificates"])
def get_certificate(certificate_id: RowId, session: DbSession, who: Anyone) -> CertificateOut:
    return certificate_out(visible_certificate(session, who, certificate_id))


@router.get(
    "/certificates/{certificate_id}/pdf",
    tags=["certificates"],
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "the document"}},
)
def get_certificate_pdf(
    certificate_id: RowId,
    session: DbSession,
    who: Anyone,
    source: Source,
    settings: AppSettings,
    language: Annotated[
        Literal["en", "fr"] | None, Query(description="default: the customer's language")
    ] = None,
) -> Response:
    """The version as a PDF/A-3 for people (one or two A4 pages, charts, route, QR code to
    its verification page), with the signed certificate attached as certificate.json: the
    PDF alone verifies offline (`coldtrace certificates verify FILE.pdf`)."""
    row = visible_certificate(session, who, certificate_id)
    try:
        pdf = render_pdf(
            version_document(
                session,
                row,
                source,
                settings.public_url,
                settings.certificate_issuer_logo,
                language,
            )
        )
    except NoDocument as exc:
        raise Conflict(
            f"{exc}: POST /api/v1/deliveries/{row.delivery_id}/reevaluate issues a version "
            "that has one"
        ) from None
    name = f"certificate-{row.delivery_id}-v{row.version}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


def _devices_regex(devices: list[str]) -> str:
    return "/^(?:" + "|".join(re.escape(d) for d in devices) + ")$/"


def _live(
    influx: InfluxClient, devices: list[str]
) -> tuple[dict[str, list[Any]], dict[tuple[str, str], list[Any]]]:
    """Newest fix per device, and newest temperature per (device, probe)."""
    if not devices:
        return {}, {}
    where = f"device =~ {_devices_regex(devices)}"
    fixes = {
        s["tags"]["device"]: s["values"][0]
        for s in influx.query(
            f"SELECT lat, lon, speed_kmh FROM position WHERE {where} "
            "GROUP BY device ORDER BY time DESC LIMIT 1"
        )
    }
    temps = {
        (s["tags"]["device"], s["tags"]["probe"]): s["values"][0]
        for s in influx.query(
            f"SELECT celsius FROM temperature WHERE {where} "
            "GROUP BY device, probe ORDER BY time DESC LIMIT 1"
        )
    }
    return fixes, temps


@router.get("/fleet", tags=["fleet"])
def fleet(
    session: DbSession, who: Staff, influx: Influx, settings: AppSettings
) -> list[FleetVehicle]:
    """Per vehicle: the devices in it now, its last reading and position, the newest value of
    each probe, its open breaches, the delivery it is on, and the probes the rules stage
    does not judge (ingest's quarantine)."""
    ingest = ingest_state(settings.ingest_health_url)
    unjudged = set() if ingest is None else set(ingest.quarantined)
    current = session.execute(
        select(Assignment, Compartment.vehicle_id)
        .join(Compartment)
        .where(Assignment.valid_to_ms.is_(None))
    ).all()
    by_vehicle: dict[str, list[Assignment]] = {}
    for a, vehicle_id in current:
        by_vehicle.setdefault(vehicle_id, []).append(a)
    fixes, temps = _live(influx, sorted({a.device_id for a, _ in current}))
    open_breaches: Counter[str] = Counter()
    for b in session.scalars(select(Breach).where(Breach.state == "open")):
        for a, vehicle_id in current:
            if a.device_id == b.device and a.probe == b.probe:
                open_breaches[vehicle_id] += 1
    active = {
        vehicle_id: delivery_id
        for delivery_id, vehicle_id in session.execute(
            select(Delivery.id, Compartment.vehicle_id)
            .join(Compartment)
            .where(Delivery.state == State.in_transit.value)
            .order_by(Delivery.id)
        )
    }
    out = []
    for v in session.scalars(select(Vehicle).order_by(Vehicle.id)):
        assigned = by_vehicle.get(v.id, [])
        devices = sorted({a.device_id for a in assigned})
        fix = max((fixes[d] for d in devices if d in fixes), default=None, key=lambda f: f[0])
        probe_values = {
            a.probe: temps[(a.device_id, a.probe)]
            for a in assigned
            if (a.device_id, a.probe) in temps
        }
        times = [f[0] for f in ([fix] if fix else [])] + [t[0] for t in probe_values.values()]
        out.append(
            FleetVehicle(
                vehicle_id=v.id,
                name=v.name,
                devices=devices,
                last_reading=from_ms(max(times)) if times else None,
                position=None
                if fix is None
                else LivePosition(at=from_ms(fix[0]), lat=fix[1], lon=fix[2], speed_kmh=fix[3]),
                temperatures={p: t[1] for p, t in sorted(probe_values.items())},
                open_breaches=open_breaches[v.id],
                active_delivery_id=active.get(v.id),
                unjudged_probes=sorted(p for p in unjudged if p.split("/")[0] in devices),
            )
        )
    return out


@router.get("/audit", tags=["audit"])
def audit_log(
    session: DbSession,
    who: Operators,
    entity: str | None = None,
    entity_id: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[AuditOut]:
    """Every state change, newest first: who, what, when, old and new values. Read-only."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    if entity is not None:
        query = query.where(AuditEntry.entity == entity)
    if entity_id is not None:
        query = query.where(AuditEntry.entity_id == entity_id)
    rows, total = page(session, query, limit, offset)
    items = [
        AuditOut(
            id=e.id,
            at=from_ms(e.at_ms),
            actor=e.actor,
            action=e.action,
            entity=e.entity,
            entity_id=e.entity_id,
            old=e.old,
            new=e.new,
        )
        for (e,) in rows
    ]
    return Page(items=items, total=total, limit=limit, offset=offset)
