"""One thread per serial port: open it, read lines, hand them on; on any error close it and
open it again with backoff (a USB adapter unplugged and plugged back, the box's power cut).

Give ports by their /dev/serial/by-id/ path: the name follows the adapter across replugs,
where /dev/ttyUSB0 may become ttyUSB1.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

import serial

from gateway.config import Port
from gateway.framing import LineFramer

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
READ_TIMEOUT_S = 0.2  # how soon a stop request is noticed

LineHandler = Callable[[Port, list[bytes]], None]


class PortReader:
    """Reads ``port`` until ``stop`` is set, giving each chunk's complete lines to
    ``handle``. ``counters`` (shared with the status) counts opens, disconnects, open
    failures, over-long lines and bytes of lines cut by a disconnect."""

    def __init__(
        self, port: Port, handle: LineHandler, counters: Counter[str], stop: threading.Event
    ) -> None:
        self.port = port
        self.handle = handle
        self.counters = counters
        self.stop = stop
        self.framer = LineFramer(port.line_limit)
        self.thread = threading.Thread(target=self._run, name=f"port-{port.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        failing = False  # log an open failure once, not at every retry
        while not self.stop.is_set():
            try:
                conn = serial.Serial(self.port.path, self.port.baud, timeout=READ_TIMEOUT_S)
            except (serial.SerialException, OSError, ValueError) as e:
                self.counters["open_failures"] += 1
                if not failing:
                    log.warning(
                        "port %s: cannot open %s (%s); retrying", self.port.name, self.port.path, e
                    )
                    failing = True
                self.stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            failing = False
            backoff = BACKOFF_MIN_S
            self.counters["opens"] += 1
            log.info("port %s: open (%s, %d baud)", self.port.name, self.port.path, self.port.baud)
            try:
                self._read(conn)
            except (serial.SerialException, OSError) as e:
                self.counters["disconnects"] += 1
                log.warning("port %s: lost (%s); reopening", self.port.name, e)
            except Exception:
                # A bug in a handler must not end the port's thread: counted, logged, and
                # the port opened again.
                self.counters["errors"] += 1
                log.exception("port %s: error handling its lines", self.port.name)
                self.stop.wait(backoff)
            finally:
                conn.close()
                cut = self.framer.reset()
                if cut:
                    self.counters["cut_bytes"] += cut

    def _read(self, conn: serial.Serial) -> None:
        while not self.stop.is_set():
            data = conn.read(max(1, conn.in_waiting))
            if not data:
                continue
            self.counters["bytes"] += len(data)
            before = self.framer.overlong
            lines = self.framer.feed(data)
            if self.framer.overlong != before:
                self.counters["overlong"] += self.framer.overlong - before
                log.warning(
                    "port %s: line over %d bytes discarded", self.port.name, self.framer.limit
                )
            if lines:
                self.counters["lines"] += len(lines)
                self.handle(self.port, lines)
