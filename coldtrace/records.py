"""Record types shared by the stages: what ingest hands to the after-store observers (the
rules stage among them). Pure: no I/O.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from coldtrace.contract import Reading

# The end of a stretch of time that has none yet (an assignment or a delivery in transit):
# epoch ms far past any device time.
FAR_FUTURE_MS: Final = 2**62


class PlacedReading(NamedTuple):
    """A reading given its device time by ingest (ingest/clock.py): stored, then handed to
    the after-store observers. Immutable, and a NamedTuple because one is built per reading:
    a frozen dataclass cost four times as much to construct, a measurable share of ingest's
    CPU."""

    device: str
    boot: int
    reading: Reading
    ts: int  # epoch ms on the device's (possibly derived) clock
    derived: bool
