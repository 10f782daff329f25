"""The breach table: written by the rules stage (alerts/store.py), read by deliveries (to
attach breaches to deliveries and certificates) and the API. A table on the one
``coldtrace.db.Base``.

Times are epoch milliseconds: ``start_ts``/``end_ts``/``through_ts`` on the device clock
(event time), ``detected_at``/``updated_at`` on the wall clock of the process that evaluated
the rules.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, UniqueConstraint
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
    # The reading its peak and degree-minutes run up to (the one that revealed its last
    # change; for device_silent, the wall time it was judged): what an open breach's duration
    # so far is counted to. NULL for breaches stored before it was kept.
    through_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    peak: Mapped[float | None] = mapped_column(Float, nullable=True)
    degree_minutes: Mapped[float] = mapped_column(Float, default=0.0)
    limit_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False)
    detected_late: Mapped[bool] = mapped_column(Boolean, default=False)
    detected_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)

    @property
    def duration_min(self) -> float | None:
        """How long it lasted (closed) or has lasted so far (open, up to ``through_ts``), min;
        None when that is not known."""
        until = self.end_ts if self.end_ts is not None else self.through_ts
        return None if until is None else (until - self.start_ts) / 60_000
