"""Changes to the relational store, each written to the audit log in the same transaction,
and the queries that keep a customer to its own rows."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import ColumnElement, Select, and_, case, delete, func, or_, select
from sqlalchemy.orm import Session

from coldtrace import signing
from coldtrace.breaches import Breach
from coldtrace.deliveries.lifecycle import Action, State, next_state
from coldtrace.deliveries.models import (
    Assignment,
    AuditEntry,
    Certificate,
    CertificateMail,
    Compartment,
    Customer,
    Delivery,
    Device,
    ProbeCalibration,
    Vehicle,
)
from coldtrace.records import FAR_FUTURE_MS

# 128 random bits (22 URL-safe characters): a certificate's public id cannot be guessed.
PUBLIC_ID_BYTES = 16
# What issue_certificate adds to a body before signing it: not part of what was judged.
ISSUED_FIELDS = ("version", "public_id")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class NotFound(Exception):
    def __init__(self, entity: str, key: object) -> None:
        super().__init__(f"no {entity} {key!r}")
        self.entity = entity


class Conflict(Exception):
    """The request contradicts what is stored (duplicate id, overlapping assignment...)."""


@dataclass(frozen=True)
class DeliveryPlan:
    customer_id: str
    vehicle_id: str
    compartment: str
    pickup_address: str
    pickup_lat: float
    pickup_lon: float
    dropoff_address: str
    dropoff_lat: float
    dropoff_lon: float
    planned_start_ms: int
    planned_end_ms: int
    profile: str | None = None
    reference: str | None = None


def snapshot(row: object, *columns: str) -> dict[str, Any]:
    return {c: getattr(row, c) for c in columns}


DELIVERY_STATE_COLUMNS = (
    "state",
    "started_ms",
    "start_source",
    "delivered_ms",
    "end_source",
    "closed_ms",
    "cancelled_ms",
)


class Store:
    """One unit of work on behalf of `actor`; the caller commits the session."""

    def __init__(
        self,
        session: Session,
        actor: str,
        clock: Callable[[], int] = wall_ms,
        profiles: Collection[str] | None = None,
    ) -> None:
        self.session = session
        self.actor = actor
        self.clock = clock
        self.profiles = profiles  # the product profile ids alerts knows; None: not checked

    def check_profile(self, profile: str | None) -> None:
        if profile is not None and self.profiles is not None and profile not in self.profiles:
            known = ", ".join(sorted(self.profiles))
            raise Conflict(f"unknown product profile {profile!r} (one of {known})")

    def audit(
        self,
        action: str,
        entity: str,
        entity_id: object,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
    ) -> None:
        self.session.add(
            AuditEntry(
                at_ms=self.clock(),
                actor=self.actor,
                action=action,
                entity=entity,
                entity_id=str(entity_id),
                old=old,
                new=new,
            )
        )

    def insert(self, row: Any, action: str, entity: str, new: dict[str, Any]) -> None:
        """Add `row`, flush it (so that it has its id) and audit it: `action` on `entity`,
        `new` what it holds."""
        self.session.add(row)
        self.session.flush()
        self.audit(action, entity, row.id, None, new)

    def _new(self, row: Any, entity: str, key: object, *columns: str) -> None:
        if self.session.get(type(row), key) is not None:
            raise Conflict(f"{entity} {key!r} exists already")
        self.insert(row, f"{entity}.create", entity, snapshot(row, *columns))

    def create_customer(
        self,
        id: str,
        name: str,
        contact_emails: Sequence[str] = (),
        language: str | None = None,
        timezone: str | None = None,
    ) -> Customer:
        """A customer: where its certificates are e-mailed, and their ``language`` and
        ``timezone`` (None: the settings')."""
        row = Customer(
            id=id,
            name=name,
            created_ms=self.clock(),
            contact_emails=list(contact_emails),
            language=language,
            timezone=timezone,
        )
        self._new(row, "customer", id, "id", "name", "contact_emails", "language", "timezone")
        return row

    def set_contacts(self, customer_id: str, contact_emails: Sequence[str]) -> Customer:
        """The addresses the customer's certificates are e-mailed to from now on."""
        row = self.session.get(Customer, customer_id)
        if row is None:
            raise NotFound("customer", customer_id)
        old = snapshot(row, "contact_emails")
        row.contact_emails = list(contact_emails)
        self.audit(
            "customer.contacts", "customer", customer_id, old, snapshot(row, "contact_emails")
        )
        return row

    def create_vehicle(self, id: str, name: str, compartments: dict[str, str | None]) -> Vehicle:
        """A vehicle with its compartments (name -> default product profile)."""
        for profile in compartments.values():
            self.check_profile(profile)
        row = Vehicle(id=id, name=name, created_ms=self.clock())
        row.compartments = [Compartment(name=n, profile=p) for n, p in compartments.items()]
        self._new(row, "vehicle", id, "id", "name")
        self.session.flush()
        self.audit(
            "vehicle.compartments", "vehicle", id, None, {"compartments": dict(compartments)}
        )
        return row

    def create_device(self, id: str, label: str | None) -> Device:
        row = Device(id=id, label=label, created_ms=self.clock())
        self._new(row, "device", id, "id", "label")
        return row

    def compartment(self, vehicle_id: str, name: str) -> Compartment:
        row = self.session.scalars(
            select(Compartment).where(
                Compartment.vehicle_id == vehicle_id, Compartment.name == name
            )
        ).one_or_none()
        if row is None:
            raise NotFound("compartment", f"{vehicle_id}/{name}")
        return row

    def add_calibration(
        self, device_id: str, probe: str, calibrated_ms: int, due_ms: int, reference: str
    ) -> ProbeCalibration:
        """A calibration record of the device's probe (epoch ms); records are never edited."""
        if self.session.get(Device, device_id) is None:
            raise NotFound("device", device_id)
        if due_ms <= calibrated_ms:
            raise Conflict("a calibration is due after it was made: due must follow calibrated")
        row = ProbeCalibration(
            device_id=device_id,
            probe=probe,
            calibrated_ms=calibrated_ms,
            due_ms=due_ms,
            reference=reference,
            created_ms=self.clock(),
        )
        self.insert(
            row,
            "calibration.create",
            "probe_calibration",
            snapshot(row, "device_id", "probe", "calibrated_ms", "due_ms", "reference"),
        )
        return row

    def assign(
        self, device_id: str, probe: str, vehicle_id: str, compartment: str, valid_from_ms: int
    ) -> Assignment:
        """The device's probe measures this compartment from valid_from on; its assignment
        until then (if any) ends there. History before valid_from is never rewritten."""
        if self.session.get(Device, device_id) is None:
            raise NotFound("device", device_id)
        target = self.compartment(vehicle_id, compartment)
        current = self.session.scalars(
            select(Assignment).where(
                Assignment.device_id == device_id,
                Assignment.probe == probe,
                or_(Assignment.valid_to_ms.is_(None), Assignment.valid_to_ms > valid_from_ms),
            )
        ).all()
        for a in current:
            if a.valid_from_ms >= valid_from_ms:
                raise Conflict(
                    f"{device_id}/{probe} has an assignment from {a.valid_from_ms} on already: "
                    "assign from a later time"
                )
            old = snapshot(a, "valid_to_ms")
            a.valid_to_ms = valid_from_ms
            self.audit("assignment.end", "assignment", a.id, old, snapshot(a, "valid_to_ms"))
        row = Assignment(
            device_id=device_id,
            probe=probe,
            compartment_id=target.id,
            valid_from_ms=valid_from_ms,
        )
        self.insert(
            row,
            "assignment.create",
            "assignment",
            {
                "device": device_id,
                "probe": probe,
                "vehicle": vehicle_id,
                "compartment": compartment,
                "valid_from_ms": valid_from_ms,
            },
        )
        return row

    def create_delivery(self, plan: DeliveryPlan) -> Delivery:
        if self.session.get(Customer, plan.customer_id) is None:
            raise NotFound("customer", plan.customer_id)
        compartment = self.compartment(plan.vehicle_id, plan.compartment)
        profile = plan.profile or compartment.profile
        self.check_profile(profile)
        if profile is None:
            raise Conflict(
                f"no product profile: name one, or give compartment "
                f"{plan.vehicle_id}/{plan.compartment} a default"
            )
        if plan.planned_end_ms <= plan.planned_start_ms:
            raise Conflict("the planned drop-off must come after the planned pickup")
        if (
            plan.reference is not None
            and self.session.scalars(
                select(Delivery.id).where(Delivery.reference == plan.reference)
            ).first()
        ):
            raise Conflict(f"a delivery with reference {plan.reference!r} exists already")
        row = Delivery(
            reference=plan.reference,
            customer_id=plan.customer_id,
            profile=profile,
            compartment_id=compartment.id,
            pickup_address=plan.pickup_address,
            pickup_lat=plan.pickup_lat,
            pickup_lon=plan.pickup_lon,
            dropoff_address=plan.dropoff_address,
            dropoff_lat=plan.dropoff_lat,
            dropoff_lon=plan.dropoff_lon,
            planned_start_ms=plan.planned_start_ms,
            planned_end_ms=plan.planned_end_ms,
            state=State.planned,
            created_ms=self.clock(),
        )
        self.insert(
            row,
            "delivery.create",
            "delivery",
            {**plan.__dict__, "profile": profile, "state": State.planned.value},
        )
        return row

    def transition(
        self, delivery: Delivery, action: Action, at_ms: int | None, source: str
    ) -> Delivery:
        """Apply a lifecycle action at `at_ms` (event time; now when not given)."""
        target = next_state(State(delivery.state), action)
        at = self.clock() if at_ms is None else at_ms
        started = delivery.started_ms
        if action is Action.deliver and started is not None and at < started:
            raise Conflict("a delivery cannot end before it started")
        old = snapshot(delivery, *DELIVERY_STATE_COLUMNS)
        delivery.state = target
        if action is Action.start:
            delivery.started_ms, delivery.start_source = at, source
        elif action is Action.deliver:
            delivery.delivered_ms, delivery.end_source = at, source
        elif action is Action.close:
            delivery.closed_ms = at
        else:
            delivery.cancelled_ms = at
        self.audit(
            f"delivery.{action.value}",
            "delivery",
            delivery.id,
            old,
            snapshot(delivery, *DELIVERY_STATE_COLUMNS),
        )
        return delivery

    def issue_certificate(
        self,
        delivery: Delivery,
        verdict: str,
        body: dict[str, Any],
        key: Ed25519PrivateKey,
        disagreements: int = 0,
        mail_to: Sequence[str] = (),
    ) -> Certificate:
        """A new version, signed with `key` (its body gains the version number and its
        public id, ISSUED_FIELDS); the one before it (if any) is marked superseded, never
        edited. ``disagreements``: breaches its evaluation and the live rules stage do not
        agree on (the body lists them). ``mail_to``: the addresses it is e-mailed to (an
        outbox row in the same transaction: CertificateMail)."""
        previous = self.session.scalars(
            select(Certificate)
            .where(Certificate.delivery_id == delivery.id, Certificate.superseded_ms.is_(None))
            .order_by(Certificate.version.desc())
        ).first()
        now = self.clock()
        if previous is not None:
            previous.superseded_ms = now
            self.audit(
                "certificate.supersede",
                "certificate",
                previous.id,
                {"superseded_ms": None},
                {"superseded_ms": now},
            )
        version = 1 if previous is None else previous.version + 1
        # The version is signed too: another version's body cannot pass for this one; so is
        # its public id, the address printed on it (QR code) of its verification page.
        public_id = secrets.token_urlsafe(PUBLIC_ID_BYTES)
        body = {**body, "version": version, "public_id": public_id}
        row = Certificate(
            delivery_id=delivery.id,
            version=version,
            public_id=public_id,
            issued_ms=now,
            verdict=verdict,
            body=body,
            signature=signing.sign(key, body),
            key_id=signing.key_id(key.public_key()),
            disagreements=disagreements,
        )
        self.insert(
            row,
            "certificate.issue",
            "certificate",
            {
                "delivery_id": delivery.id,
                "version": row.version,
                "verdict": verdict,
                "public_id": public_id,
            },
        )
        if mail_to:
            self.session.add(
                CertificateMail(
                    certificate_id=row.id,
                    recipients=list(mail_to),
                    attempts=0,
                    next_attempt_ms=now,
                )
            )
        return row

    def delete_delivery(self, delivery: Delivery, retention_days: int) -> None:
        """Delete a closed or cancelled delivery with every version of its certificate (and
        their e-mail outbox rows), refused (Conflict, saying until when) while its newest
        version is younger than ``retention_days`` (COLDTRACE_CERTIFICATE_RETENTION_DAYS).
        Its readings stay in InfluxDB (its own retention policy) and the audit log keeps
        every entry about it, plus this one."""
        if delivery.state not in (State.closed, State.cancelled):
            raise Conflict(
                f"delivery {delivery.id} is {delivery.state}: only a closed or cancelled "
                "delivery may be deleted"
            )
        certificates = self.session.scalars(
            select(Certificate).where(Certificate.delivery_id == delivery.id)
        ).all()
        newest = max((c.issued_ms for c in certificates), default=None)
        if newest is not None:
            kept_until = newest + retention_days * 86_400_000
            if self.clock() < kept_until:
                until = datetime.fromtimestamp(kept_until / 1000, UTC)
                raise Conflict(
                    f"delivery {delivery.id}'s certificates are kept until {until:%Y-%m-%d %H:%M} "
                    f"UTC, {retention_days} days after its newest version "
                    "(COLDTRACE_CERTIFICATE_RETENTION_DAYS): deletion refused"
                )
        ids = [c.id for c in certificates]
        if ids:
            self.session.execute(
                delete(CertificateMail).where(CertificateMail.certificate_id.in_(ids))
            )
            self.session.execute(delete(Certificate).where(Certificate.id.in_(ids)))
        old = snapshot(delivery, "reference", "customer_id", *DELIVERY_STATE_COLUMNS)
        self.session.delete(delivery)
        self.audit(
            "delivery.delete",
            "delivery",
            delivery.id,
            old | {"certificate_versions": len(ids), "newest_issued_ms": newest},
            None,
        )


# -- which rows belong to a delivery -----------------------------------------------------------


def window_start(d: type[Delivery] = Delivery) -> ColumnElement[int]:
    return func.coalesce(d.started_ms, d.planned_start_ms)


def window_end(d: type[Delivery] = Delivery) -> ColumnElement[int]:
    """Until delivered (or cancelled); open while in transit; the plan before that."""
    return func.coalesce(
        d.delivered_ms,
        d.cancelled_ms,
        case((d.state == State.in_transit.value, FAR_FUTURE_MS), else_=d.planned_end_ms),
    )


def breach_links(withdrawn: bool = False) -> Select[Breach, int, str]:
    """(breach, delivery id, customer id) for every breach overlapping a delivery's window
    and the assignment of one of its device's probes to the delivery's compartment (pairwise
    overlap of three intervals is a common overlap): a probe's breaches through that probe's
    assignment, the device's own (probe "": device_silent, door_open) through any of its
    probes'. One row per breach and delivery. Withdrawn breaches (late readings showed they
    never happened) only when asked for."""
    breach_end = func.coalesce(Breach.end_ts, FAR_FUTURE_MS)
    assigned_to = func.coalesce(Assignment.valid_to_ms, FAR_FUTURE_MS)
    measured = (
        select(Assignment.id)
        .where(
            Assignment.compartment_id == Delivery.compartment_id,
            Assignment.device_id == Breach.device,
            or_(Assignment.probe == Breach.probe, Breach.probe == ""),
            Breach.start_ts < assigned_to,
            breach_end >= Assignment.valid_from_ms,
            Assignment.valid_from_ms <= window_end(),
            assigned_to > window_start(),
        )
        .exists()
    )
    links = (
        select(Breach, Delivery.id, Delivery.customer_id)
        .join(Delivery, and_(Breach.start_ts <= window_end(), breach_end >= window_start()))
        .where(measured)
    )
    return links if withdrawn else links.where(Breach.state != "withdrawn")
