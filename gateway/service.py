"""`coldtrace gateway run`: the serial ports, the spool and the uplink, wired together.

Per line kind: a box's batch is checked against the wire contract and spooled as the box
wrote it (its device id, boot and seqs: the gateway forwards, it never renumbers), with a
time when the box has no clock and a position when it has no GNSS; a logger's line becomes a
reading of the logger's device with the gateway's boot and the next seq; a GNSS sentence
feeds the gateway's time and track. Everything refused is counted per port and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from gateway.config import GatewayConfig, Port
from gateway.decode import BoxBatch, LoggerColumns, Refused, box_line, logger_line
from gateway.gnss import Gnss
from gateway.ports import PortReader
from gateway.spool import Added, Entry, Spool
from gateway.uplink import Uplink

log = logging.getLogger(__name__)

# A refusal is logged at most once per port and reason in this long (s); all are counted.
LOG_EVERY_S = 60.0


class Gateway:
    def __init__(self, cfg: GatewayConfig, password: str) -> None:
        self.cfg = cfg
        self.spool = Spool(cfg.spool, cfg.spool_max_readings)
        self.boot = self.spool.next_boot()
        self.gnss = Gnss()
        self._gnss_lock = threading.Lock()
        self._mono0 = time.monotonic_ns() // 1_000_000
        self.counters: dict[str, Counter[str]] = {p.name: Counter() for p in cfg.ports}
        self._logged: dict[tuple[str, str], float] = {}
        self.uplink = Uplink(cfg, password, self.spool)
        self.columns = {
            p.name: LoggerColumns(
                p.probes, p.delimiter, p.unit, p.time_column, p.time_format, p.timezone
            )
            for p in cfg.ports
        }
        self.stop = threading.Event()
        handlers = {
            "box": self.on_box_lines,
            "gnss": self.on_gnss_lines,
            "logger": self.on_logger_lines,
        }
        self.readers = [
            PortReader(p, handlers[p.kind], self.counters[p.name], self.stop) for p in cfg.ports
        ]

    # -- time --------------------------------------------------------------------------------

    def mono_ms(self) -> int:
        """The gateway's monotonic clock (ms since it started): its readings' `up`."""
        return time.monotonic_ns() // 1_000_000 - self._mono0

    def utc_ms(self) -> int | None:
        """UTC now from the GNSS receiver, else the computer's clock if trusted, else None."""
        with self._gnss_lock:
            utc = self.gnss.utc_ms(self.mono_ms())
        if utc is None and self.cfg.system_clock:
            utc = time.time_ns() // 1_000_000
        return utc

    # -- lines -------------------------------------------------------------------------------

    def _refused(self, port: Port, refused: Refused) -> None:
        self.counters[port.name][refused.reason] += 1
        key = (port.name, refused.reason)
        now = time.monotonic()
        if now - self._logged.get(key, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged[key] = now
            log.warning(
                "port %s: %s line (%d so far): %s",
                port.name,
                refused.reason,
                self.counters[port.name][refused.reason],
                refused.detail,
            )

    def on_box_lines(self, port: Port, lines: list[bytes]) -> None:
        entries = []
        for line in lines:
            batch = box_line(line)
            if isinstance(batch, Refused):
                self._refused(port, batch)
                continue
            if batch.torn:
                self._refused(port, Refused("torn", f"{batch.torn} bytes before a batch"))
            if batch.device not in port.carries:
                self._refused(port, Refused("not_carried", f"device {batch.device!r}"))
                continue
            self._place(batch)
            entries.append(Entry(batch.device, batch.boot, batch.readings, batch.dropped))
        if entries:
            self.spool.add_all(entries, lambda added: self._counted(port, added))
            self.uplink.wake.set()

    def _place(self, batch: BoxBatch) -> None:
        """Time for a clockless box's readings (its boot's offset, fixed at the first batch
        seen with a UTC time known: the newest reading taken on arrival, an error of the
        serial latency, ms) and the gateway's position for readings without one."""
        offset = None
        if any(r["ts"] is None for r in batch.readings):
            utc = self.utc_ms()
            guess = None if utc is None else utc - batch.readings[-1]["up"]
            offset = self.spool.anchor(batch.device, batch.boot, guess)
        with self._gnss_lock:
            for r in batch.readings:
                if r["ts"] is None and offset is not None:
                    r["ts"] = offset + r["up"]
                if "gps" not in r and r["ts"] is not None:
                    fix = self.gnss.fix_at(r["ts"])
                    if fix is not None:
                        r["gps"] = fix

    def on_gnss_lines(self, port: Port, lines: list[bytes]) -> None:
        counters = self.counters[port.name]
        with self._gnss_lock:
            for line in lines:
                if self.gnss.feed(line, self.mono_ms()):
                    counters["sentences"] += 1
                else:
                    self._refused(port, Refused("bad_sentence", repr(line[:82])))
            counters["refused_times"] = self.gnss.refused_times

    def on_logger_lines(self, port: Port, lines: list[bytes]) -> None:
        assert port.device is not None  # config: a logger port has its device
        readings: list[dict[str, Any]] = []
        for line in lines:
            got = logger_line(line, self.columns[port.name])
            if isinstance(got, Refused):
                self._refused(port, got)
                continue
            up = self.mono_ms()
            ts = got.ts if port.time_column is not None else self.utc_ms()
            reading: dict[str, Any] = {"ts": ts, "up": up, "probes": got.probes}
            with self._gnss_lock:
                fix = self.gnss.gps.current(up)
            if fix is not None:
                reading["gps"] = fix
            readings.append(reading)
        if readings:
            entry = Entry(port.device, self.boot, readings, number=True)
            self.spool.add_all([entry], lambda added: self._counted(port, added))
            self.uplink.wake.set()

    # -- status ------------------------------------------------------------------------------

    def _counted(self, port: Port, added: list[Added]) -> bytes:
        """Count readings the spool is taking from ``port`` (called in its transaction, so
        the counters saved with them count them) and return all ports' counters."""
        counters = self.counters[port.name]
        for a in added:
            counters["readings"] += a.spooled
            counters["repeats"] += a.repeats
        return self._ports()

    def _ports(self) -> bytes:
        """Every port's counters, JSON, as `coldtrace gateway status` shows them."""
        return orjson.dumps(
            {
                p.name: {"path": p.path, "kind": p.kind, **self.counters[p.name]}
                for p in self.cfg.ports
            }
        )

    def save_status(self) -> dict[str, Any]:
        """Store the counters in the spool (for `coldtrace gateway status`) and publish the
        whole status retained; returns it."""
        status = {
            "gateway": self.cfg.gateway,
            "boot": self.boot,
            "at_ms": int(time.time() * 1000),
            "connected": self.uplink.connected.is_set(),
            "uplink": dict(self.uplink.counters),
            **self.spool.save_ports(self._ports),
        }
        self.spool.put_meta("status", orjson.dumps(status))
        self.uplink.publish_status(orjson.dumps(status))
        return status

    # -- running -----------------------------------------------------------------------------

    def run(self) -> None:
        """Until ``stop`` is set (SIGTERM, SIGINT): read, spool, publish."""
        log.info(
            "gateway %s: boot %d, %d readings in the spool",
            self.cfg.gateway,
            self.boot,
            self.spool.status()["depth"],
        )
        self.save_status()  # this run's counters from zero: none of the last run's stay
        self.uplink.start()
        for reader in self.readers:
            reader.start()
        publisher = threading.Thread(
            target=self.uplink.run, args=(self.stop,), name="publish", daemon=True
        )
        publisher.start()
        try:
            while not self.stop.wait(self.cfg.status_interval_s):
                self.save_status()
        finally:
            self.stop.set()
            for reader in self.readers:
                reader.thread.join(5)
            publisher.join(5)
            self.save_status()
            self.uplink.close()
            self.spool.close()


def read_password(path: Path) -> str:
    """The gateway's broker password: the first line of its file."""
    return path.read_text().strip().splitlines()[0]
