"""Relational tables of deliveries and their surroundings, on the one ``coldtrace.db.Base``.

Times are epoch milliseconds (UTC), as device time is everywhere else in coldtrace, so the
same integer compares with InfluxDB and rule times on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from coldtrace.db import Base

ID = String(64)


class Customer(Base):
    __tablename__ = "customer"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # Where its certificates are e-mailed (every version, once: CertificateMail); None: none.
    contact_emails: Mapped[list[str] | None] = mapped_column(JSON)
    # Its certificates' language ("en", "fr") and time zone (IANA); None: the settings'
    # COLDTRACE_CERTIFICATE_LANGUAGE / _TIMEZONE.
    language: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str | None] = mapped_column(String(64))


class Vehicle(Base):
    __tablename__ = "vehicle"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    compartments: Mapped[list[Compartment]] = relationship(
        back_populates="vehicle", order_by="Compartment.name", lazy="selectin"
    )


class Compartment(Base):
    __tablename__ = "compartment"
    __table_args__ = (UniqueConstraint("vehicle_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    vehicle_id: Mapped[str] = mapped_column(ForeignKey("vehicle.id"))
    name: Mapped[str] = mapped_column(String(64))
    # The product profile carried here unless a delivery names its own (alerts' profile ids).
    profile: Mapped[str | None] = mapped_column(String(32))
    vehicle: Mapped[Vehicle] = relationship(back_populates="compartments")


class Device(Base):
    __tablename__ = "device"
    id: Mapped[str] = mapped_column(ID, primary_key=True)  # its MQTT username
    label: Mapped[str | None] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # When its broker account was disabled (login refused; the row and its history stay).
    disabled_ms: Mapped[int | None] = mapped_column(BigInteger)
    # A gateway's account: the boxes whose topics it publishes for
    # (coldtrace/deliveries/accounts.py); None for a device publishing its own.
    carries: Mapped[list[str] | None] = mapped_column(JSON)


class ProbeCalibration(Base):
    """A calibration of one probe of a device: when it was calibrated, until when it holds
    (due), and the calibration certificate's reference. Records are added, never edited: a
    probe's status on a delivery comes from its latest calibration before the delivery."""

    __tablename__ = "probe_calibration"
    __table_args__ = (Index("ix_probe_calibration_device_probe", "device_id", "probe"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("device.id"))
    probe: Mapped[str] = mapped_column(String(64))
    calibrated_ms: Mapped[int] = mapped_column(BigInteger)
    due_ms: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Assignment(Base):
    """Which compartment a device's probe measures, from valid_from until valid_to (open end
    while it is still there): devices move between vehicles."""

    __tablename__ = "assignment"
    __table_args__ = (Index("ix_assignment_device_probe", "device_id", "probe"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("device.id"))
    probe: Mapped[str] = mapped_column(String(64))
    compartment_id: Mapped[int] = mapped_column(ForeignKey("compartment.id"), index=True)
    valid_from_ms: Mapped[int] = mapped_column(BigInteger)
    valid_to_ms: Mapped[int | None] = mapped_column(BigInteger)
    compartment: Mapped[Compartment] = relationship(lazy="joined")


class Delivery(Base):
    __tablename__ = "delivery"
    __table_args__ = (Index("ix_delivery_customer_state", "customer_id", "state"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(100), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customer.id"))
    profile: Mapped[str] = mapped_column(String(32))
    compartment_id: Mapped[int] = mapped_column(ForeignKey("compartment.id"), index=True)
    pickup_address: Mapped[str] = mapped_column(String(300))
    pickup_lat: Mapped[float]
    pickup_lon: Mapped[float]
    dropoff_address: Mapped[str] = mapped_column(String(300))
    dropoff_lat: Mapped[float]
    dropoff_lon: Mapped[float]
    planned_start_ms: Mapped[int] = mapped_column(BigInteger)
    planned_end_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), index=True)
    started_ms: Mapped[int | None] = mapped_column(BigInteger)
    start_source: Mapped[str | None] = mapped_column(String(16))
    delivered_ms: Mapped[int | None] = mapped_column(BigInteger)
    end_source: Mapped[str | None] = mapped_column(String(16))
    closed_ms: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    compartment: Mapped[Compartment] = relationship(lazy="joined")


class Certificate(Base):
    """One issued version of a delivery's certificate; a newer version supersedes it, an
    issued one is never edited."""

    __tablename__ = "certificate"
    __table_args__ = (
        UniqueConstraint("delivery_id", "version"),
        UniqueConstraint("public_id", name="uq_certificate_public_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id"), index=True)
    version: Mapped[int]
    # The version's address on the public verification page (/v/<public_id>): 128 random
    # bits, so that nobody finds certificates by counting; also in the signed body.
    public_id: Mapped[str] = mapped_column(String(32))
    issued_ms: Mapped[int] = mapped_column(BigInteger)
    superseded_ms: Mapped[int | None] = mapped_column(BigInteger)
    verdict: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Ed25519 over the body's canonical form (coldtrace.signing), base64, and the signing
    # key's id; None only on versions issued before certificates were signed.
    signature: Mapped[str | None] = mapped_column(String(88))
    key_id: Mapped[str | None] = mapped_column(String(16))
    # Breaches found by the evaluation of the stored readings or by the live rules stage but
    # not both (the body lists them): counted for /metrics and /health without reading bodies.
    disagreements: Mapped[int] = mapped_column(default=0, server_default="0")


class CertificateMail(Base):
    """The outbox of certificate e-mails: one row per version, written in the transaction
    that issues it, so each version is sent at most once, also across restarts. A row being
    sent carries ``sending_ms`` (claimed before the SMTP conversation); one whose sender
    died mid-conversation is never sent again automatically (``last_error`` says so)."""

    __tablename__ = "certificate_mail"
    __table_args__ = (
        UniqueConstraint("certificate_id", name="uq_certificate_mail_certificate"),
        Index("ix_certificate_mail_pending", "sent_ms", "next_attempt_ms"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificate.id"))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    attempts: Mapped[int]
    next_attempt_ms: Mapped[int] = mapped_column(BigInteger)
    sending_ms: Mapped[int | None] = mapped_column(BigInteger)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger)
    attachment: Mapped[str | None] = mapped_column(String(16))  # "pdf" or "json", once sent
    last_error: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    """An API key, kept only as the SHA-256 of its 256 random bits (shown once at creation)."""

    __tablename__ = "api_key"
    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16))  # to recognise a key in lists, not secret
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customer.id"))
    label: Mapped[str | None] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)


class AuditEntry(Base):
    """Append-only (the migration adds triggers refusing UPDATE and DELETE)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new: Mapped[dict[str, Any] | None] = mapped_column(JSON)
