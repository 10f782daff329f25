"""Customers, vehicles with their compartments, devices and their assignments."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, status
from pydantic import BaseModel
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from coldtrace.api.auth import Admin, Anyone, Operators, Staff
from coldtrace.api.deps import AppSettings, DbSession, Profiles
from coldtrace.api.problems import Problem
from coldtrace.api.routes.common import Limit, Offset, page
from coldtrace.api.schemas import (
    AssignmentIn,
    AssignmentOut,
    CalibrationIn,
    CalibrationOut,
    CompartmentOut,
    CustomerContactsIn,
    CustomerIn,
    CustomerOut,
    DeviceCreated,
    DeviceCredential,
    DeviceIn,
    DeviceOut,
    Page,
    VehicleIn,
    VehicleOut,
    from_ms,
    to_ms,
)
from coldtrace.broker_accounts import BrokerAccounts
from coldtrace.deliveries.accounts import DeviceAccounts
from coldtrace.deliveries.models import (
    Assignment,
    Compartment,
    Customer,
    Device,
    ProbeCalibration,
    Vehicle,
)
from coldtrace.deliveries.store import NotFound, Store
from coldtrace.settings import ConfigError, Settings

router = APIRouter()
Row = TypeVar("Row")
Out = TypeVar("Out", bound=BaseModel)


def listed(
    session: Session, query: Select[Row], out: Callable[[Row], Out], limit: int, offset: int
) -> Page[Out]:
    """One page of the query's rows as response models."""
    rows, total = page(session, query, limit, offset)
    return Page(items=[out(r[0]) for r in rows], total=total, limit=limit, offset=offset)


def found(session: Session, model: type[Row], kind: str, key: str) -> Row:
    """The row with this key, or 404 (NotFound names the kind)."""
    row = session.get(model, key)
    if row is None:
        raise NotFound(kind, key)
    return row


def customer_out(c: Customer) -> CustomerOut:
    return CustomerOut(
        id=c.id,
        name=c.name,
        created=from_ms(c.created_ms),
        contact_emails=c.contact_emails or [],
        language=c.language,
        timezone=c.timezone,
    )


def vehicle_out(v: Vehicle) -> VehicleOut:
    return VehicleOut(
        id=v.id,
        name=v.name,
        created=from_ms(v.created_ms),
        compartments=[CompartmentOut(name=c.name, profile=c.profile) for c in v.compartments],
    )


def device_out(d: Device) -> DeviceOut:
    return DeviceOut(
        id=d.id,
        label=d.label,
        created=from_ms(d.created_ms),
        disabled=None if d.disabled_ms is None else from_ms(d.disabled_ms),
        carries=d.carries,
    )


def device_accounts(session: Session, actor: str, settings: Settings) -> DeviceAccounts:
    """The registry and the broker's accounts together (coldtrace/deliveries/accounts.py), or
    503 when this API has no broker account files configured."""
    try:
        files = settings.broker_files
    except ConfigError as exc:
        raise Problem(503, str(exc)) from None
    broker = BrokerAccounts(files)
    return DeviceAccounts(Store(session, actor), broker, settings.broker_own_accounts)


def assignment_out(a: Assignment) -> AssignmentOut:
    return AssignmentOut(
        id=a.id,
        device_id=a.device_id,
        probe=a.probe,
        vehicle_id=a.compartment.vehicle_id,
        compartment=a.compartment.name,
        valid_from=from_ms(a.valid_from_ms),
        valid_to=from_ms(a.valid_to_ms),
    )


@router.post("/customers", status_code=status.HTTP_201_CREATED, tags=["customers"])
def create_customer(body: CustomerIn, session: DbSession, who: Admin) -> CustomerOut:
    row = Store(session, who.actor).create_customer(
        body.id, body.name, body.contact_emails, body.language, body.timezone
    )
    session.commit()
    return customer_out(row)


@router.put("/customers/{customer_id}/contacts", tags=["customers"])
def set_customer_contacts(
    customer_id: str, body: CustomerContactsIn, session: DbSession, who: Admin
) -> CustomerOut:
    """Where the customer's certificates are e-mailed from now on (versions issued before
    keep the addresses they were sent to)."""
    row = Store(session, who.actor).set_contacts(customer_id, body.contact_emails)
    session.commit()
    return customer_out(row)


@router.get("/customers", tags=["customers"])
def list_customers(
    session: DbSession, who: Anyone, limit: Limit = 50, offset: Offset = 0
) -> Page[CustomerOut]:
    query = select(Customer).order_by(Customer.id)
    if who.customer_id is not None:
        query = query.where(Customer.id == who.customer_id)
    return listed(session, query, customer_out, limit, offset)


@router.get("/customers/{customer_id}", tags=["customers"])
def get_customer(customer_id: str, session: DbSession, who: Anyone) -> CustomerOut:
    row = session.get(Customer, customer_id)
    if row is None or (who.customer_id is not None and who.customer_id != customer_id):
        raise NotFound("customer", customer_id)
    return customer_out(row)


@router.post("/vehicles", status_code=status.HTTP_201_CREATED, tags=["vehicles"])
def create_vehicle(
    body: VehicleIn, session: DbSession, who: Admin, profiles: Profiles
) -> VehicleOut:
    compartments = {c.name: c.profile for c in body.compartments}
    store = Store(session, who.actor, profiles=profiles)
    row = store.create_vehicle(body.id, body.name, compartments)
    session.commit()
    return vehicle_out(row)


@router.get("/vehicles", tags=["vehicles"])
def list_vehicles(
    session: DbSession, who: Staff, limit: Limit = 50, offset: Offset = 0
) -> Page[VehicleOut]:
    return listed(session, select(Vehicle).order_by(Vehicle.id), vehicle_out, limit, offset)


@router.get("/vehicles/{vehicle_id}", tags=["vehicles"])
def get_vehicle(vehicle_id: str, session: DbSession, who: Staff) -> VehicleOut:
    return vehicle_out(found(session, Vehicle, "vehicle", vehicle_id))


@router.post("/devices", status_code=status.HTTP_201_CREATED, tags=["devices"])
def create_device(
    body: DeviceIn, session: DbSession, who: Admin, settings: AppSettings
) -> DeviceCreated:
    """Register a device (or a gateway, with ``carries``) and give it a broker account; its
    password is in this answer only."""
    row, password = device_accounts(session, who.actor, settings).add(
        body.id, body.label, body.carries
    )
    session.commit()
    return DeviceCreated(**device_out(row).model_dump(), password=password)


@router.post("/devices/{device_id}/rotate", tags=["devices"])
def rotate_device(
    device_id: str, session: DbSession, who: Admin, settings: AppSettings
) -> DeviceCredential:
    """A new broker password for the device (in this answer only); the old one is refused
    once the broker has reloaded."""
    password = device_accounts(session, who.actor, settings).rotate(device_id)
    session.commit()
    return DeviceCredential(device=device_id, password=password)


@router.post("/devices/{device_id}/disable", tags=["devices"])
def disable_device(
    device_id: str, session: DbSession, who: Admin, settings: AppSettings
) -> DeviceOut:
    """Refuse the device's broker login; its row, assignments and readings stay."""
    row = device_accounts(session, who.actor, settings).disable(device_id)
    session.commit()
    return device_out(row)


@router.get("/devices", tags=["devices"])
def list_devices(
    session: DbSession, who: Staff, limit: Limit = 50, offset: Offset = 0
) -> Page[DeviceOut]:
    return listed(session, select(Device).order_by(Device.id), device_out, limit, offset)


@router.get("/devices/{device_id}", tags=["devices"])
def get_device(device_id: str, session: DbSession, who: Staff) -> DeviceOut:
    return device_out(found(session, Device, "device", device_id))


@router.post(
    "/devices/{device_id}/assignments", status_code=status.HTTP_201_CREATED, tags=["devices"]
)
def assign_device(
    device_id: str, body: AssignmentIn, session: DbSession, who: Operators
) -> AssignmentOut:
    store = Store(session, who.actor)
    valid_from = store.clock() if body.valid_from is None else to_ms(body.valid_from)
    row = store.assign(device_id, body.probe, body.vehicle_id, body.compartment, valid_from)
    session.commit()
    return assignment_out(row)


@router.get("/devices/{device_id}/assignments", tags=["devices"])
def list_assignments(device_id: str, session: DbSession, who: Staff) -> list[AssignmentOut]:
    found(session, Device, "device", device_id)
    rows = session.scalars(
        select(Assignment)
        .join(Compartment)
        .where(Assignment.device_id == device_id)
        .order_by(Assignment.valid_from_ms, Assignment.probe)
    )
    return [assignment_out(a) for a in rows]


def calibration_out(c: ProbeCalibration) -> CalibrationOut:
    return CalibrationOut(
        id=c.id,
        device_id=c.device_id,
        probe=c.probe,
        calibrated=from_ms(c.calibrated_ms),
        due=from_ms(c.due_ms),
        reference=c.reference,
    )


@router.post(
    "/devices/{device_id}/calibrations", status_code=status.HTTP_201_CREATED, tags=["devices"]
)
def add_calibration(
    device_id: str, body: CalibrationIn, session: DbSession, who: Operators
) -> CalibrationOut:
    """Record a calibration of one of the device's probes (added, never edited): a
    certificate states each probe's latest calibration before the delivery, and whether it
    had expired (docs/certificates.md)."""
    row = Store(session, who.actor).add_calibration(
        device_id, body.probe, to_ms(body.calibrated), to_ms(body.due), body.reference
    )
    session.commit()
    return calibration_out(row)


@router.get("/devices/{device_id}/calibrations", tags=["devices"])
def list_calibrations(device_id: str, session: DbSession, who: Staff) -> list[CalibrationOut]:
    found(session, Device, "device", device_id)
    rows = session.scalars(
        select(ProbeCalibration)
        .where(ProbeCalibration.device_id == device_id)
        .order_by(ProbeCalibration.probe, ProbeCalibration.calibrated_ms, ProbeCalibration.id)
    )
    return [calibration_out(c) for c in rows]
