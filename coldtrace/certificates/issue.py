"""Issuing a delivery's certificate: judge its stored readings (``judge``), build the body
(``content``) and store a new signed version when it says something else than the current
one; re-certify closed deliveries whose breaches or readings changed late."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select

from alerts.evaluation import ProbeKey
from coldtrace import signing
from coldtrace.breaches import Breach
from coldtrace.certificates.content import Calibration, Context, Place, certificate_body
from coldtrace.certificates.judge import judge
from coldtrace.certificates.measurement import certificate_line
from coldtrace.deliveries.attach import delivery_segments, window
from coldtrace.deliveries.automation import trace_properties
from coldtrace.deliveries.lifecycle import State
from coldtrace.deliveries.models import Certificate, Customer, Delivery, ProbeCalibration, Vehicle
from coldtrace.deliveries.source import ReadingSource
from coldtrace.deliveries.store import ISSUED_FIELDS, Store, breach_links
from coldtrace.deliveries.window import Segment
from coldtrace.settings import Settings

log = logging.getLogger(__name__)

# Body fields set by issuing, not by judging (compared without them).
UNJUDGED: Final = frozenset({*ISSUED_FIELDS, "signer"})


def issue_certificate(
    store: Store, d: Delivery, source: ReadingSource, settings: Settings
) -> Certificate | None:
    """Judge the delivery from its stored readings (``judge``) and issue a version
    signed with the settings' key if that says something else than the current one, or
    there is none, or the current one is signed with a key this installation no longer
    trusts (a compromised key left out of COLDTRACE_CERTIFICATE_RETIRED_PUBLIC_KEYS: the
    re-issue after a rotation, docs/deploy.md). A version on which the evaluation and the
    live rules stage disagree is logged at ERROR when issued (once: an unchanged body issues
    nothing)."""
    start, end = window(d, store.clock())
    evaluation, device_breaches = judge(store.session, d, source, settings, store.clock())
    ctx = context(store, d, settings, [(p.device, p.probe) for p in evaluation.probes])
    verdict, body = certificate_body(
        trace_properties(d, start, end), evaluation, ctx, device_breaches
    )
    current = current_certificate(store, d)
    if current is not None and judged(current.body) == judged(body) and _trusted(current, settings):
        return None
    issued = store.issue_certificate(
        d,
        verdict,
        body,
        settings.certificate_key,
        len(evaluation.disagreements),
        mail_to=mail_recipients(store, d, settings),
    )
    # Before the store commits: a certificate InfluxDB did not take is not issued either (it
    # is issued again on the next close or sweep), so the Compliance dashboard misses none.
    source.influx.write(certificate_line(body, issued.version, start, end).encode())
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


def _trusted(c: Certificate, settings: Settings) -> bool:
    """Whether the version's key is one this installation vouches for (a version from before
    certificates were signed has none: re-judging it alone issues nothing new)."""
    return c.key_id is None or c.key_id in map(signing.key_id, settings.certificate_public_keys)


def judged(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the evaluation said in a body, without what issuing it adds (its version, its
    signer's time): an unchanged judgement issues no new version."""
    return {k: v for k, v in body.items() if k not in UNJUDGED}


def context(store: Store, d: Delivery, settings: Settings, probes: list[ProbeKey]) -> Context:
    """The facts around a delivery's evaluation: issuer and signer (settings), its customer
    with language and time zone (else the settings' defaults), vehicle, places, and every
    calibration record of ``probes``; signed now (the store's clock)."""
    customer = store.session.get(Customer, d.customer_id)
    vehicle = store.session.get(Vehicle, d.compartment.vehicle_id)
    calibrations: dict[ProbeKey, list[Calibration]] = defaultdict(list)
    devices = sorted({device for device, _ in probes})
    for row in store.session.scalars(
        select(ProbeCalibration).where(ProbeCalibration.device_id.in_(devices))
    ):
        calibrations[(row.device_id, row.probe)].append(
            Calibration(row.calibrated_ms, row.due_ms, row.reference)
        )
    return Context(
        issuer_name=settings.certificate_issuer_name,
        issuer_address=settings.certificate_issuer_address,
        signer_name=settings.certificate_signer_name,
        customer_name=d.customer_id if customer is None else customer.name,
        language=(customer and customer.language) or settings.certificate_language,
        timezone=(customer and customer.timezone) or settings.certificate_timezone,
        vehicle_name=d.compartment.vehicle_id if vehicle is None else vehicle.name,
        pickup=Place(d.pickup_address, d.pickup_lat, d.pickup_lon),
        dropoff=Place(d.dropoff_address, d.dropoff_lat, d.dropoff_lon),
        signed_at=store.clock(),
        calibrations=dict(calibrations),
    )


def mail_recipients(store: Store, d: Delivery, settings: Settings) -> list[str]:
    """The customer's contact addresses when certificates are e-mailed (an SMTP server is
    configured: COLDTRACE_CERTIFICATE_SMTP_HOST), else none."""
    if not settings.certificate_smtp_host:
        return []
    customer = store.session.get(Customer, d.customer_id)
    return list(customer.contact_emails or []) if customer is not None else []


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


@dataclass(frozen=True)
class Issuer:
    """The ``deliveries.automation.Certifier`` the entry points pass to the delivery sweep."""

    source: ReadingSource
    settings: Settings

    def issue(self, store: Store, d: Delivery) -> Certificate | None:
        """``issue_certificate`` with this issuer's readings and settings."""
        return issue_certificate(store, d, self.source, self.settings)

    def recertify(self, store: Store) -> int:
        """``recertify`` with this issuer's readings and settings."""
        return recertify(store, self.source, self.settings)
