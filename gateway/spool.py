"""The gateway's spool: every reading is committed here (SQLite, WAL, synchronous FULL)
before it is published, and leaves only when ingest's end-to-end ack covers it.

A reading's body is stored as the exact JSON it is published with, so a reading sent again
(after a reconnect, a restart, a lost ack) is byte-for-byte the same: ingest takes it as an
idempotent repeat, never as a conflicting duplicate. The seqs of each device only grow: a
box's seq at or below the highest the spool ever took is a repeat and is not taken again;
a line logger's seqs are given here, in the same transaction as its readings.

Bounded: beyond ``max_readings`` the oldest readings go, and each device's dropped seqs are
kept as ranges that ride on its next batches (``dropped`` in the wire contract) until an ack
covers them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    boot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    spooled_ms INTEGER NOT NULL,
    UNIQUE (device, seq)
);
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY,
    high_seq INTEGER NOT NULL,   -- the highest seq ever spooled
    acked_seq INTEGER NOT NULL   -- the highest seq an ack covered (-1: none)
);
CREATE TABLE IF NOT EXISTS dropped (
    device TEXT NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (device, first)
);
CREATE TABLE IF NOT EXISTS anchors (
    device TEXT NOT NULL,
    boot INTEGER NOT NULL,
    offset_ms INTEGER NOT NULL,  -- UTC ms minus the box's `up` in that boot
    PRIMARY KEY (device, boot)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""
MAX_DROPPED_PER_BATCH = 64  # the wire contract's limit
_PUT_PORTS = "INSERT OR REPLACE INTO meta VALUES ('ports', ?)"


@dataclass(frozen=True)
class Batch:
    """Unacknowledged readings of one device and boot, oldest first, as one message."""

    device: str
    boot: int
    first_seq: int
    last_seq: int
    count: int
    payload: bytes  # the wire-contract JSON


@dataclass(frozen=True)
class Entry:
    """Readings of one device and boot to spool, and seq ranges the device reported dropped;
    ``number``: they have no seq yet and get the device's next ones."""

    device: str
    boot: int
    readings: list[dict[str, Any]]
    dropped: list[tuple[int, int]] = field(default_factory=list)
    number: bool = False


@dataclass(frozen=True)
class Added:
    """What one ``add`` took: readings spooled, repeats left out, seqs of the taken ones."""

    spooled: int
    repeats: int
    seqs: list[int]


class SpoolBusy(Exception):
    """Another gateway process has this spool open; ``pid`` is its process id (0: unknown)."""

    def __init__(self, path: Path, pid: int) -> None:
        super().__init__(f"the spool {path} is in use by another gateway (pid {pid or '?'})")
        self.pid = pid


class Spool:
    """Thread-safe: readers add, the publisher reads batches, the MQTT thread acks. One
    process at a time: an exclusive ``flock`` on ``<spool>.lock``, released by the kernel
    however the holder ends (two gateways on one spool would each send it all)."""

    def __init__(self, path: Path, max_readings: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lockfile = path.with_name(path.name + ".lock").open("a+")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.seek(0)
            held_by = self._lockfile.read().strip()
            self._lockfile.close()
            raise SpoolBusy(path, int(held_by) if held_by.isdigit() else 0) from None
        self._lockfile.truncate(0)
        self._lockfile.write(f"{os.getpid()}\n")
        self._lockfile.flush()
        self.max_readings = max_readings
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._count = self._one("SELECT count(*) FROM readings")

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lockfile.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction, under the lock: all of it on disk at its end, or none of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> Any:
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else row[0]

    # -- meta --------------------------------------------------------------------------------

    def next_boot(self) -> int:
        """The gateway's boot counter, counted up and kept: the `boot` of logger readings.
        The last run's port counters go with it (a status never shows them as this run's)."""
        with self._tx():
            boot = int(self._one("SELECT value FROM meta WHERE key = 'boot'") or -1) + 1
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('boot', ?)", (str(boot),))
            self._db.execute("DELETE FROM meta WHERE key = 'ports'")
        return boot

    def put_meta(self, key: str, value: bytes) -> None:
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def save_ports(self, ports: Callable[[], bytes]) -> dict[str, Any]:
        """Save the port counters (JSON) ``ports`` gives and return the ``status`` they are
        part of. ``ports`` is called under the spool's lock, as ``add_all``'s ``counted``
        is: no reading is spooled and counted between the counters taken and saved (saving
        older counters over those an ``add_all`` saved would drop its readings' count)."""
        with self._tx():
            self._db.execute(_PUT_PORTS, (ports(),))
            return status_of(self._db)

    def anchor(self, device: str, boot: int, offset_ms: int | None) -> int | None:
        """The UTC offset of a box's boot: the one kept, else ``offset_ms`` kept from now
        on (None: none known yet)."""
        with self._tx():
            kept = self._one(
                "SELECT offset_ms FROM anchors WHERE device = ? AND boot = ?", device, boot
            )
            if kept is not None or offset_ms is None:
                return None if kept is None else int(kept)
            self._db.execute("INSERT INTO anchors VALUES (?, ?, ?)", (device, boot, offset_ms))
            return offset_ms

    # -- writing -----------------------------------------------------------------------------

    def add(
        self,
        device: str,
        boot: int,
        readings: Iterable[dict[str, Any]],
        dropped: Iterable[tuple[int, int]] = (),
        number: bool = False,
    ) -> Added:
        """Commit readings of one device and boot (and seq ranges the device reported as
        dropped). ``number``: the readings have no seq and get the device's next ones."""
        return self.add_all([Entry(device, boot, list(readings), list(dropped), number)])[0]

    def add_all(
        self, entries: list[Entry], counted: Callable[[list[Added]], bytes] | None = None
    ) -> list[Added]:
        """``add`` for each entry, all in one transaction (one disk write for all the lines
        a port delivered at once). ``counted``: given what was added, counts it and returns
        the port counters (JSON) saved in the same transaction: a status never shows
        readings spooled, or already acked out of the spool, that its counters miss."""
        now = int(time.time() * 1000)
        out = []
        with self._tx():
            for e in entries:
                out.append(self._add(e, now))
            if self._count > self.max_readings:
                self._drop_oldest(self._count - self.max_readings)
            if counted is not None:
                self._db.execute(_PUT_PORTS, (counted(out),))
        return out

    def _add(self, e: Entry, now: int) -> Added:
        high = self._one("SELECT high_seq FROM devices WHERE device = ?", e.device)
        high = -1 if high is None else int(high)
        rows = []
        repeats = 0
        for r in e.readings:
            if e.number:
                r = {"seq": high + 1, **r}
            elif r["seq"] <= high:
                repeats += 1
                continue
            high = r["seq"]
            rows.append((e.device, e.boot, high, orjson.dumps(r), now))
        self._db.execute(
            "INSERT INTO devices VALUES (?, ?, -1) "
            "ON CONFLICT (device) DO UPDATE SET high_seq = excluded.high_seq",
            (e.device, high),
        )
        self._db.executemany(
            "INSERT INTO readings (device, boot, seq, body, spooled_ms) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        for first, last in e.dropped:
            self._add_dropped(e.device, first, last)
        self._count += len(rows)
        return Added(len(rows), repeats, [r[2] for r in rows])

    def _add_dropped(self, device: str, first: int, last: int) -> None:
        """Keep a dropped range, joined to the one it continues (as the firmware does)."""
        prev = self._one(
            "SELECT first FROM dropped WHERE device = ? AND last = ?", device, first - 1
        )
        if prev is not None:
            self._db.execute(
                "UPDATE dropped SET last = ? WHERE device = ? AND first = ?", (last, device, prev)
            )
        else:
            self._db.execute(
                "INSERT OR IGNORE INTO dropped VALUES (?, ?, ?)", (device, first, last)
            )

    def _drop_oldest(self, n: int) -> None:
        rows = self._db.execute(
            "SELECT id, device, seq FROM readings ORDER BY id LIMIT ?", (n,)
        ).fetchall()
        ranges: dict[str, tuple[int, int]] = {}
        for _, device, seq in rows:
            first, _last = ranges.get(device, (seq, seq))
            ranges[device] = (min(first, seq), seq)
        self._db.execute("DELETE FROM readings WHERE id <= ?", (rows[-1][0],))
        self._count -= len(rows)
        for device, (first, last) in ranges.items():
            self._add_dropped(device, first, last)
        total = int(self._one("SELECT value FROM meta WHERE key = 'dropped_total'") or 0)
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('dropped_total', ?)", (str(total + len(rows)),)
        )

    def ack(self, device: str, first: int, seq: int) -> int:
        """Ingest has every seq of ``device`` from ``first`` to ``seq`` (contract v1.1):
        forget those readings, unless the spool holds one below ``first`` (ingest never got
        it: everything stays, to be sent again) or the ack is older than one applied.
        Returns the number of readings deleted."""
        with self._tx():
            acked = self._one("SELECT acked_seq FROM devices WHERE device = ?", device)
            if acked is None or seq <= acked:
                return 0
            below = self._one(
                "SELECT seq FROM readings WHERE device = ? AND seq < ? LIMIT 1", device, first
            )
            if below is not None:
                return 0
            deleted = self._db.execute(
                "DELETE FROM readings WHERE device = ? AND seq <= ?", (device, seq)
            ).rowcount
            self._db.execute("DELETE FROM dropped WHERE device = ? AND last <= ?", (device, seq))
            self._db.execute("UPDATE devices SET acked_seq = ? WHERE device = ?", (seq, device))
            self._count -= deleted
        return deleted

    # -- reading -----------------------------------------------------------------------------

    def acked(self, device: str) -> int:
        """The highest seq an ack covered, -1 if none."""
        with self._lock:
            seq = self._one("SELECT acked_seq FROM devices WHERE device = ?", device)
        return -1 if seq is None else int(seq)

    def newest(self, device: str) -> int:
        """The highest seq ever spooled of ``device``, -1 if none."""
        with self._lock:
            seq = self._one("SELECT high_seq FROM devices WHERE device = ?", device)
        return -1 if seq is None else int(seq)

    def next_batch(self, sent: dict[str, int], limit: int) -> Batch | None:
        """The oldest readings not yet sent (above ``sent[device]``, else above the ack) of
        the device whose oldest such reading was spooled first; None when all are sent."""
        with self._lock:
            best: tuple[int, str, int] | None = None
            for device, acked in self._db.execute("SELECT device, acked_seq FROM devices"):
                after = max(int(acked), sent.get(device, -1))
                # The device's lowest unsent seq is its oldest row: seqs are spooled in order.
                head = self._one(
                    "SELECT id FROM readings WHERE device = ? AND seq > ? ORDER BY seq LIMIT 1",
                    device,
                    after,
                )
                if head is not None and (best is None or head < best[0]):
                    best = (int(head), device, after)
            if best is None:
                return None
            _, device, after = best
            rows = self._db.execute(
                "SELECT boot, seq, body FROM readings WHERE device = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (device, after, limit),
            ).fetchall()
            dropped = self._db.execute(
                "SELECT first, last FROM dropped WHERE device = ? ORDER BY first LIMIT ?",
                (device, MAX_DROPPED_PER_BATCH),
            ).fetchall()
        boot = rows[0][0]
        # A batch holds one boot: stop at the first reading of the next.
        for i, r in enumerate(rows):
            if r[0] != boot:
                rows = rows[:i]
                break
        payload = b"".join(
            (
                b'{"device":',
                orjson.dumps(device),
                b',"boot":',
                str(boot).encode(),
                b',"readings":[',
                b",".join(r[2] for r in rows),
                b"]",
                (
                    b',"dropped":' + orjson.dumps([{"from": a, "to": b} for a, b in dropped])
                    if dropped
                    else b""
                ),
                b"}",
            )
        )
        return Batch(device, boot, rows[0][1], rows[-1][1], len(rows), payload)

    def status(self) -> dict[str, Any]:
        """See ``status_of``."""
        with self._lock:
            return status_of(self._db)


def status_of(db: sqlite3.Connection) -> dict[str, Any]:
    """Depth (readings), the oldest reading's age (s), dropped totals, per-device figures and
    the per-port counters the gateway last saved."""
    now = int(time.time() * 1000)

    def one(sql: str) -> Any:
        row = db.execute(sql).fetchone()
        return None if row is None else row[0]

    oldest = one("SELECT min(spooled_ms) FROM readings")
    devices = db.execute(
        "SELECT d.device, d.high_seq, d.acked_seq, "
        "(SELECT count(*) FROM readings r WHERE r.device = d.device), "
        "(SELECT count(*) FROM dropped x WHERE x.device = d.device) "
        "FROM devices d ORDER BY d.device"
    ).fetchall()
    ports = one("SELECT value FROM meta WHERE key = 'ports'")
    return {
        "depth": one("SELECT count(*) FROM readings"),
        "oldest_unacked_age_s": None if oldest is None else round((now - oldest) / 1000, 1),
        "dropped_total": int(one("SELECT value FROM meta WHERE key = 'dropped_total'") or 0),
        "devices": [
            {"device": d, "high_seq": h, "acked_seq": a, "pending": n, "dropped_ranges": x}
            for d, h, a, n, x in devices
        ],
        "ports": orjson.loads(ports) if ports else {},
    }


def read_status(path: Path) -> dict[str, Any]:
    """``status_of`` a spool another process (the running gateway) writes; read-only."""
    if not path.exists():
        raise FileNotFoundError(path)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        # One read transaction: one snapshot (the depth, the devices and the port counters
        # of the same commit), not one per query while the gateway commits in between.
        db.execute("BEGIN")
        return status_of(db)
    finally:
        db.close()
