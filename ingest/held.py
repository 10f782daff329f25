"""Durable holding area for readings whose time is not known yet (``ts`` null, no offset).

They are kept in the relational store (SQLite by default) so their MQTT message can be
acknowledged, and released once a reading of the same boot fixes the clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    Column,
    LargeBinary,
    String,
    Table,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from coldtrace.contract import Reading
from coldtrace.db import Base, make_engine
from ingest.clock import BootKey

held_reading = Table(
    "held_reading",
    Base.metadata,
    Column("device", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("boot", BigInteger, nullable=False, index=True),
    Column("reading", LargeBinary, nullable=False),
)


def held_seqs(conn: Connection | Session, device: str) -> set[int]:
    """The seqs of one device held now (any boot), through a connection or an ORM session of
    the relational store: the books count them as held (ingest/books.py)."""
    rows = conn.execute(select(held_reading.c.seq).where(held_reading.c.device == device))
    return {int(r.seq) for r in rows}


def held_count(conn: Connection | Session) -> int:
    """How many readings are held now, all devices (the fleet's books' held)."""
    return int(conn.execute(select(func.count()).select_from(held_reading)).scalar_one())


class HeldReadings:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)  # table: migrations/ (coldtrace.db.upgrade)

    def keys(self) -> set[BootKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(held_reading.c.device, held_reading.c.boot).distinct())
            return {(r.device, r.boot) for r in rows}

    def count(self) -> int:
        with self.engine.connect() as conn:
            return held_count(conn)

    def seqs(self, device: str) -> set[int]:
        """The seqs of one device held now (any boot): they prime its ledger's books."""
        with self.engine.connect() as conn:
            return held_seqs(conn, device)

    def seqs_of(self, devices: Iterable[str]) -> dict[str, set[int]]:
        """The seqs held now of each of these devices (any boot), in one query: they prime
        the ledgers of a batch's new devices together (ingest.pipeline)."""
        out: dict[str, set[int]] = {d: set() for d in devices}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(held_reading.c.device, held_reading.c.seq).where(
                    held_reading.c.device.in_(list(out))
                )
            )
            for r in rows:
                out[r.device].add(int(r.seq))
        return out

    def hold(self, device: str, boot: int, readings: list[Reading]) -> list[Reading]:
        """Hold readings; return those whose seq is already held with other content (boot or
        values): conflicting duplicates, for the caller to dead-letter. The first copy stays;
        an identical copy (a redelivered message) changes nothing."""
        rows = {
            r.seq: {
                "device": device,
                "seq": r.seq,
                "boot": boot,
                "reading": r.model_dump_json().encode(),
            }
            for r in readings
        }
        if not rows:
            return []
        upsert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = upsert(held_reading).on_conflict_do_nothing()
        with self.engine.begin() as conn:
            existing = {
                row.seq: (row.boot, bytes(row.reading))
                for row in conn.execute(
                    select(held_reading.c.seq, held_reading.c.boot, held_reading.c.reading).where(
                        held_reading.c.device == device, held_reading.c.seq.in_(list(rows))
                    )
                )
            }
            new = [row for seq, row in rows.items() if seq not in existing]
            if new:
                conn.execute(stmt, new)
        return [
            r
            for r in readings
            if r.seq in existing and existing[r.seq] != (boot, rows[r.seq]["reading"])
        ]

    def take(self, key: BootKey) -> list[Reading]:
        """The held readings of one boot, oldest first (removed only by release())."""
        device, boot = key
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(held_reading.c.reading)
                .where(held_reading.c.device == device, held_reading.c.boot == boot)
                .order_by(held_reading.c.seq)
            )
            return [Reading.model_validate_json(r.reading) for r in rows]

    def release(self, key: BootKey, seqs: list[int]) -> None:
        device, boot = key
        with self.engine.begin() as conn:
            conn.execute(
                delete(held_reading).where(
                    held_reading.c.device == device,
                    held_reading.c.boot == boot,
                    held_reading.c.seq.in_(seqs),
                )
            )
