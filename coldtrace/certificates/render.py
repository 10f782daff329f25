"""The document of a stored certificate version (its PDF for the API, the CLI and the mailer;
its HTML for the verification page), made from one DocumentRequest (``version_document``):
the version as the API returns it (``envelope``), the readings of its window read back from
InfluxDB for the pictures, and its verification address
(``<COLDTRACE_PUBLIC_URL>/v/<public_id>``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from coldtrace.certificates.document import DocumentRequest, Readings, logo_uri
from coldtrace.deliveries.attach import delivery_segments
from coldtrace.deliveries.lifecycle import State
from coldtrace.deliveries.models import Certificate, Delivery
from coldtrace.deliveries.source import ReadingSource
from coldtrace.deliveries.store import NotFound


def _iso(ms: int | None) -> str | None:
    """As the API writes instants (pydantic: UTC with a Z, microseconds only when set)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def envelope(c: Certificate) -> dict[str, Any]:
    """The version as GET /api/v1/certificates/{id} returns it: what the PDF attaches."""
    return {
        "id": c.id,
        "delivery_id": c.delivery_id,
        "version": c.version,
        "issued": _iso(c.issued_ms),
        "superseded": _iso(c.superseded_ms),
        "verdict": c.verdict,
        "body": c.body,
        "algorithm": "Ed25519",
        "signature": c.signature,
        "key_id": c.key_id,
    }


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def readings_of(session: Session, c: Certificate, source: ReadingSource) -> Readings:
    """The readings of the version's window (its body's start..end) for its pictures: each
    compartment probe's temperatures and the GPS fixes, as the delivery's trace reads them
    (ReadingSource.finished_readings: kept in memory while InfluxDB holds as many). A probe
    name measured by two devices in turn (a logger swapped mid-delivery) is one series."""
    d = session.get(Delivery, c.delivery_id)
    if d is None or "start" not in c.body or "end" not in c.body:
        return Readings()
    segs = delivery_segments(session, d, _ms(c.body["start"]), _ms(c.body["end"]))
    stored = source.finished_readings(segs)
    return Readings(
        {
            (p["device"], p["probe"]): stored.temperatures.get(p["probe"], [])
            for p in c.body.get("probes", [])
        },
        [(f.lat, f.lon) for f in stored.positions],
    )


def verify_url(public_url: str | None, body: dict[str, Any]) -> str | None:
    """The version's public verification page, None when it has no public id or there is no
    public address to print."""
    public_id = body.get("public_id")
    if not public_url or not public_id:
        return None
    return f"{public_url.rstrip('/')}/v/{public_id}"


def version_document(
    session: Session,
    c: Certificate,
    source: ReadingSource,
    public_url: str | None,
    logo: Path | None = None,
    language: str | None = None,
) -> DocumentRequest:
    """What the document of version ``c`` is made from, for either renderer (pdf.render_pdf,
    html.certificate_html): its readings read with ``source``, its verification address
    under ``public_url``, the issuer's ``logo`` file, in ``language`` (None: its
    customer's)."""
    return DocumentRequest(
        envelope(c),
        readings_of(session, c, source),
        verify_url(public_url, c.body),
        logo_uri(logo),
        language,
    )


class NotIssued(Exception):
    """A delivery with no certificate yet: one is issued when it closes (never for a
    cancelled one); the message names the state it is in."""

    def __init__(self, delivery: object, state: str) -> None:
        why = (
            "a cancelled delivery has no certificate"
            if state == State.cancelled
            else "its certificate is issued when the delivery closes"
        )
        super().__init__(f"delivery {delivery!r} is {state}: {why}")
        self.state = state


def current_version(session: Session, delivery: int | str) -> Certificate:
    """The current version of the certificate of a delivery named by its reference or id;
    NotFound when there is no such delivery (or, closed, it has none), NotIssued when it is
    not closed yet."""
    d = session.scalars(select(Delivery).where(Delivery.reference == str(delivery))).first()
    if d is None and str(delivery).isdigit():
        d = session.get(Delivery, int(delivery))
    if d is None:
        raise NotFound("delivery", delivery)
    c = session.scalars(
        select(Certificate).where(
            Certificate.delivery_id == d.id, Certificate.superseded_ms.is_(None)
        )
    ).first()
    if c is None and d.state != State.closed:
        raise NotIssued(delivery, d.state)
    if c is None:
        raise NotFound("certificate of delivery", delivery)
    return c
