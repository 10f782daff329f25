"""The relational side of alerts: breaches (upserted into ``coldtrace.breaches``, for
deliveries to attach) and the notification outbox (so a replay never notifies twice). Tables
live on the one ``coldtrace.db.Base``.

Times are epoch milliseconds: ``start_ts``/``end_ts`` on the device clock (event time),
``detected_at``/``updated_at`` on the wall clock of the process that evaluated the rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    exists,
    inspect,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from alerts.analysis import iso
from alerts.rules import (
    BreachClosed,
    BreachEscalated,
    BreachOpened,
    BreachRecord,
    BreachRevised,
    BreachUpdated,
    BreachWithdrawn,
    Event,
    Severity,
)
from coldtrace.breaches import Breach
from coldtrace.db import Base, make_engine


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


TRANSITIONS: Final = {
    BreachOpened: "opened",
    BreachEscalated: "escalated",
    BreachClosed: "closed",
    BreachUpdated: "updated",
    BreachRevised: "revised",
    BreachWithdrawn: "withdrawn",
}
NOTIFIED: Final = frozenset({"opened", "escalated", "closed", "withdrawn"})
DEVICES_PER_QUERY = 500  # devices in one IN (...): well under SQLite's bound parameters


@dataclass(frozen=True)
class StoredChange:
    """A breach change as stored: what the InfluxDB point and the notifications carry."""

    breach: Breach
    transition: str
    at: int


def record_of(row: Breach) -> BreachRecord:
    severity: Severity = "critical" if row.severity == "critical" else "major"
    return BreachRecord(
        row.rule,
        row.start_ts,
        row.end_ts,
        severity,
        row.peak,
        row.degree_minutes,
        row.limit_c,
        row.suppressed,
        row.through_ts if row.end_ts is None else None,
    )


def payload_of(row: Breach, transition: str) -> str:
    return json.dumps(
        {
            "transition": transition,
            "breach_id": row.id,
            "device": row.device,
            "probe": row.probe or None,
            "rule": row.rule,
            "profile": row.profile,
            "state": row.state,
            "severity": row.severity,
            "start": iso(row.start_ts),
            "end": iso(row.end_ts),
            "peak_c": row.peak,
            "degree_minutes": row.degree_minutes,
            "limit_c": row.limit_c,
            "detected_late": row.detected_late,
            "detected_at": iso(row.detected_at),
        },
        sort_keys=True,
    )


T = TypeVar("T")


class StoreUnavailable(Exception):
    """The relational store cannot be written now (down, locked): retry later."""


class BreachStore:
    """Breaches upserted by key, and the notification outbox, in the relational store."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)  # tables: migrations/ (coldtrace.db.upgrade)

    def ask(self, query: Callable[[Session], T]) -> T:
        """Run a read of the relational store (e.g. the deliveries' queries the rules need);
        StoreUnavailable when it is down or locked."""
        with _unavailable(), Session(self.engine) as session:
            return query(session)

    def known(self, device: str) -> list[Breach]:
        """The device's breaches that may still change: open ones, and closed ones of the
        late-data horizon are the caller's to pick; withdrawn ones are not returned."""
        return self.known_of([device])[device]

    def known_of(self, devices: Collection[str]) -> dict[str, list[Breach]]:
        """``known`` of each device, in one query per DEVICES_PER_QUERY devices (after a
        restart the rules stage asks about a whole fleet at once)."""
        out: dict[str, list[Breach]] = {d: [] for d in devices}
        ordered = sorted(out)
        with Session(self.engine, expire_on_commit=False) as s:
            for i in range(0, len(ordered), DEVICES_PER_QUERY):
                chunk = ordered[i : i + DEVICES_PER_QUERY]
                for b in s.scalars(
                    select(Breach).where(Breach.device.in_(chunk), Breach.state != "withdrawn")
                ):
                    out[b.device].append(b)
        return out

    def apply(
        self,
        device: str,
        probe: str,
        profile: str,
        events: list[Event],
        now_ms: int,
        late_after_ms: int,
        channels: list[str],
    ) -> list[StoredChange]:
        """Upsert each event's breach and queue its notifications, in one transaction; the
        unique keys make this idempotent when the same events come again (replay, restart).
        Returns the changes that changed a stored breach, each with the breach as it stood
        right after it: a transition already stored (re-derived after a restart) is no change,
        so it is logged, counted and written to InfluxDB once."""
        changes: list[StoredChange] = []
        with _unavailable(), Session(self.engine, expire_on_commit=False) as s, s.begin():
            for e in events:
                b, transition = e.breach, TRANSITIONS[type(e)]
                row = s.scalars(
                    select(Breach).where(
                        Breach.device == device,
                        Breach.probe == probe,
                        Breach.rule == b.rule,
                        Breach.start_ts == b.start,
                    )
                ).one_or_none()
                before = None if row is None else _content(row)
                if row is not None and transition == "opened" and _known_opening(row, b, profile):
                    continue
                if row is None:
                    row = Breach(
                        device=device,
                        probe=probe,
                        rule=b.rule,
                        profile=profile,
                        start_ts=b.start,
                        detected_late=e.late or now_ms - e.at > late_after_ms,
                        detected_at=now_ms,
                    )
                    s.add(row)
                if transition == "opened":  # found again under another profile (stage)
                    row.profile = profile
                row.end_ts, row.severity, row.peak = b.end, b.severity, b.peak
                row.degree_minutes, row.limit_c = b.degree_minutes, b.limit_c
                row.state = (
                    "withdrawn"
                    if transition == "withdrawn"
                    else ("open" if b.end is None else "closed")
                )
                row.suppressed = b.suppressed
                # An open breach runs up to its record's ``through``; otherwise the reading
                # that revealed the change is the newest one its figures know of.
                row.through_ts = e.at if b.through is None else b.through
                if before == _content(row):
                    continue
                row.updated_at = now_ms
                s.flush()
                if transition in NOTIFIED and not b.suppressed:
                    payload = payload_of(row, transition)
                    for channel in channels:
                        s.execute(
                            _insert_ignore(self.engine)(Notification)
                            .values(
                                breach_id=row.id,
                                transition=transition,
                                channel=channel,
                                payload=payload,
                                attempts=0,
                                next_attempt_at=now_ms,
                            )
                            .on_conflict_do_nothing()
                        )
                changes.append(StoredChange(_snapshot(row), transition, e.at))
        return changes

    def due(self, now_ms: int, channels: list[str], limit: int = 100) -> list[Notification]:
        """Notifications to send now on these channels (others wait for their channel); one
        waits while an earlier transition of its breach on its channel is unsent (retried,
        even by an earlier process), so a receiver gets each breach's transitions in order."""
        earlier = aliased(Notification)
        with Session(self.engine, expire_on_commit=False) as s:
            return list(
                s.scalars(
                    select(Notification)
                    .where(
                        Notification.sent_at.is_(None),
                        Notification.next_attempt_at <= now_ms,
                        Notification.channel.in_(channels),
                        ~exists().where(
                            earlier.breach_id == Notification.breach_id,
                            earlier.channel == Notification.channel,
                            earlier.sent_at.is_(None),
                            earlier.id < Notification.id,
                        ),
                    )
                    .order_by(Notification.id)
                    .limit(limit)
                )
            )

    def sent(self, note_id: int, now_ms: int) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get_one(Notification, note_id)
            row.sent_at, row.attempts = now_ms, row.attempts + 1

    def failed(self, note_id: int, error: str, retry_at_ms: int) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get_one(Notification, note_id)
            row.attempts += 1
            row.last_error, row.next_attempt_at = error[:1000], retry_at_ms


def _content(row: Breach) -> tuple[object, ...]:
    return (
        row.profile,
        row.state,
        row.end_ts,
        row.severity,
        row.peak,
        row.degree_minutes,
        row.limit_c,
        row.suppressed,
        row.through_ts,
    )


def _known_opening(row: Breach, b: BreachRecord, profile: str) -> bool:
    """An opening of a stored breach says nothing new (it was re-derived from readings after
    a restart; it must not reopen what closed) unless the breach was withdrawn, alarms now
    after being suppressed, or is found again under another profile."""
    return (
        row.state != "withdrawn"
        and row.profile == profile
        and not (row.suppressed and not b.suppressed)
    )


def _snapshot(row: Breach) -> Breach:
    """A detached copy: later events of the same batch change the row, not the copy."""
    return Breach(**{a.key: getattr(row, a.key) for a in inspect(Breach).column_attrs})


@contextmanager
def _unavailable() -> Iterator[None]:
    """The store down or locked (OperationalError) as StoreUnavailable: the caller retries."""
    try:
        yield
    except OperationalError as exc:
        raise StoreUnavailable(str(exc).splitlines()[0]) from exc


def _insert_ignore(engine: Engine) -> Any:
    return pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
