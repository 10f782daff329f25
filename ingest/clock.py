"""Stage 2, place in time: give every reading a device timestamp, or hold it.

A device that has not synced its clock sends ``ts: null`` with ``up`` (ms since boot). Any
reading of the same boot that carries a ``ts`` fixes the boot's offset (ts - up); readings of
that boot are then placed at offset + up. Until an offset is known they are held, never
stored with an invented time. The first offset seen for a boot is kept, so a replay places
readings at exactly the same times again. Pure: no I/O.
"""

from __future__ import annotations

from coldtrace.contract import Reading
from coldtrace.records import PlacedReading

BootKey = tuple[str, int]  # (device, boot)


class BootClocks:
    def __init__(self) -> None:
        self._offsets: dict[BootKey, int] = {}

    def offset(self, key: BootKey) -> int | None:
        return self._offsets.get(key)

    def learn(self, key: BootKey, offset: int) -> None:
        self._offsets.setdefault(key, offset)

    def place(
        self, device: str, boot: int, readings: list[Reading]
    ) -> tuple[list[PlacedReading], list[Reading]]:
        """Split readings into placed ones and ones that must be held."""
        key = (device, boot)
        if key not in self._offsets:
            for r in readings:
                if r.ts is not None:
                    self._offsets[key] = r.ts - r.up
                    break
        offset = self._offsets.get(key)
        placed: list[PlacedReading] = []
        held: list[Reading] = []
        for r in readings:
            if r.ts is not None:
                placed.append(PlacedReading(device, boot, r, r.ts, False))
            elif offset is not None:
                placed.append(PlacedReading(device, boot, r, offset + r.up, True))
            else:
                held.append(r)
        return placed, held
