"""The relational side of alerts: breaches (for deliveries to attach) and the notification
outbox (so a replay never notifies twice). Tables live on the one ``coldtrace.db.Base``.

Times are epoch milliseconds: ``start_ts``/``end_ts`` on the device clock (event time),
``detected_at``/``updated_at`` on the wall clock of the process that evaluated the rules.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from coldtrace.db import Base


class Breach(Base):
    """One breach of one rule on one probe, keyed by (device, probe, rule, start_ts), which is
    what makes replays idempotent. ``state`` is ``open`` (``end_ts`` NULL), ``closed``, or
    ``withdrawn`` (late readings showed it never happened). Device-level rules (silence) use
    probe ``""``."""

    __tablename__ = "breach"
    __table_args__ = (
        UniqueConstraint("device", "probe", "rule", "start_ts", name="uq_breach_key"),
        Index("ix_breach_device_time", "device", "start_ts", "end_ts"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(String(64))
    probe: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(32))
    profile: Mapped[str] = mapped_column(String(32))
    start_ts: Mapped[int] = mapped_column(BigInteger)
    end_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    peak: Mapped[float | None] = mapped_column(Float, nullable=True)
    degree_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    limit_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False)
    detected_late: Mapped[bool] = mapped_column(Boolean, default=False)
    detected_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Notification(Base):
    """One notification of one breach transition on one channel: the unique key is what keeps
    a replay from notifying twice; ``sent_at`` NULL means still to send (with retries)."""

    __tablename__ = "notification_outbox"
    __table_args__ = (
        UniqueConstraint("breach_id", "transition", "channel", name="uq_notification_key"),
        Index("ix_notification_pending", "sent_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    breach_id: Mapped[int] = mapped_column(ForeignKey("breach.id"))
    transition: Mapped[str] = mapped_column(String(16))  # opened, escalated, closed, withdrawn
    channel: Mapped[str] = mapped_column(String(16))  # webhook, mqtt, email
    payload: Mapped[str] = mapped_column(Text)  # the JSON document every channel sends
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger)
    sent_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
