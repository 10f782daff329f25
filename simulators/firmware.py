"""What a sensor box puts on the wire, as the firmware does it (firmware/app.py, outbox.py,
store.py, clock.py): pure, so the simulated fleet speaks the wire contract exactly.

- Every reading goes to the outbox first and leaves oldest first, in batches of at most
  ``batch_max`` readings that all carry one boot (``Outbox.take``).
- ``seq`` strictly increases over the box's whole life, across reboots (``Counters``).
- ``up`` is milliseconds since power-on; ``ts`` is ``None`` until a time source set the
  clock (``Clock.now_ms``), then UTC ms of the box's clock (which may be skewed).
- Probe values are stored in hundredths of a degree (the outbox record), GPS in 1e-7 degree
  and speed and HDOP in hundredths, the battery in millivolts.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from coldtrace.contract import TelemetryBatch


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message: sent at ``at_ms`` (simulated ms from the scenario's start)."""

    at_ms: int
    payload: bytes
    seqs: tuple[int, ...]
    boot: int
    kind: str = "live"  # live, backlog, duplicate, replay


@dataclass
class Firmware:
    """One box's counters, clock and outbox. Times are ms from the scenario's start;
    ``epoch_ms`` is the wall-clock time of that start (what a set clock adds)."""

    device: str
    epoch_ms: int
    batch_max: int = 50
    boot: int = 1
    next_seq: int = 1
    booted_at: int = 0  # power-on time of the current boot
    clock_offset: int | None = 0  # the box's clock minus true time (ms); None: not set
    outbox: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (boot, reading)
    # Not the firmware's (its outbox sorts probes by name): another box or gateway that sends
    # them in any order, drawn from this generator.
    shuffle: random.Random | None = None

    def power_on(self, t_ms: int) -> None:
        """A reboot: the next boot, ``up`` from zero, the clock unset until ``set_clock``;
        the outbox (flash) and the seq are kept."""
        self.boot += 1
        self.booted_at = t_ms
        self.clock_offset = None

    def set_clock(self, offset_ms: int) -> None:
        self.clock_offset = offset_ms

    def take(
        self,
        t_ms: int,
        probes: dict[str, float | None],
        door: bool | None,
        battery_v: float,
        gps: tuple[float, float, float, float] | None,
        rssi_dbm: int | None,
    ) -> dict[str, Any]:
        """Store the reading taken at ``t_ms`` and return it as it goes on the wire.
        ``gps``: lat, lon, speed km/h, HDOP."""
        seq = self.next_seq
        self.next_seq += 1
        names = sorted(probes)
        if self.shuffle is not None:
            self.shuffle.shuffle(names)
        reading: dict[str, Any] = {
            "seq": seq,
            "ts": None if self.clock_offset is None else self.epoch_ms + t_ms + self.clock_offset,
            "up": t_ms - self.booted_at,
            # the outbox keeps probes in name order, in hundredths of a degree
            "probes": {k: _centi(probes[k]) for k in names},
        }
        if gps is not None:
            lat, lon, speed, hdop = gps
            reading["gps"] = {
                "lat": round(lat * 1e7) / 1e7,
                "lon": round(lon * 1e7) / 1e7,
                "speed_kmh": round(speed * 100) / 100,
                "hdop": round(hdop * 100) / 100,
            }
        if door is not None:
            reading["door"] = door
        reading["battery_v"] = round(battery_v * 1000) / 1000
        if rssi_dbm is not None:
            reading["rssi_dbm"] = rssi_dbm
        self.outbox.append((self.boot, reading))
        return reading

    def forward(self, t_ms: int) -> list[Message]:
        """Send the whole outbox (the uplink is up): batches oldest first, one boot each."""
        out: list[Message] = []
        while self.outbox:
            boot = self.outbox[0][0]
            n = 0
            while n < len(self.outbox) and n < self.batch_max and self.outbox[n][0] == boot:
                n += 1
            readings = [r for _, r in self.outbox[:n]]
            del self.outbox[:n]
            batch = {"device": self.device, "boot": boot, "readings": readings}
            payload = json.dumps(batch).encode()
            TelemetryBatch.model_validate_json(payload)  # the contract, checked at the source
            out.append(Message(t_ms, payload, tuple(r["seq"] for r in readings), boot))
        return out


def _centi(value: float | None) -> float | None:
    return None if value is None else round(value * 100) / 100
