"""The gateway's GNSS receiver: UTC time for readings without one and positions for
readings without one. Pure: fed lines and the gateway's monotonic clock (ms), no I/O.

Parsing is the box's own parser (coldtrace/nmea.py, which the firmware runs too).
"""

from __future__ import annotations

import bisect
from collections import deque

from coldtrace.contract import MAX_TS_MS, MIN_TS_MS
from coldtrace.nmea import Gps

# A position is added to a reading taken within this long of a fix (ms): at 90 km/h a van
# covers 250 m in 10 s.
FIX_MATCH_MS = 10_000
# Fixes kept to place a backlog arriving a little late (at one RMC a second: 10 minutes).
TRACK_LEN = 600


class Gnss:
    """UTC from the latest RMC whose time the contract accepts (2020..2100: a receiver whose
    week number rolled over says 1999), carried forward on the monotonic clock; and the track
    of recent fixes by UTC."""

    def __init__(self) -> None:
        self.gps = Gps()
        self.refused_times = 0  # RMC times outside 2020..2100
        self._offset: int | None = None  # UTC ms minus monotonic ms
        self._times: deque[int] = deque(maxlen=TRACK_LEN)  # UTC ms of each fix, ascending
        self._fixes: deque[dict[str, float]] = deque(maxlen=TRACK_LEN)

    def feed(self, line: bytes, mono_ms: int) -> bool:
        """One sentence; False if it was damaged (bad checksum, cut off, noise)."""
        s = self.gps.feed(line, mono_ms)
        if s is None:
            return False
        if s[0] == "RMC" and s[1] is not None and s[2] is not None:
            utc: int = s[1]
            if not MIN_TS_MS <= utc <= MAX_TS_MS:
                self.refused_times += 1
                return True
            self._offset = utc - mono_ms
            fix = self.gps.current(mono_ms)
            if fix is not None and (not self._times or utc > self._times[-1]):
                self._times.append(utc)
                self._fixes.append(fix)
        return True

    def utc_ms(self, mono_ms: int) -> int | None:
        """UTC epoch ms at that monotonic time, or None before the receiver gave a time."""
        return None if self._offset is None else self._offset + mono_ms

    def fix_at(self, utc_ms: int) -> dict[str, float] | None:
        """The fix nearest in time to ``utc_ms`` if within FIX_MATCH_MS, else None."""
        i = bisect.bisect_left(self._times, utc_ms)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self._times):
                gap = abs(self._times[j] - utc_ms)
                if gap <= FIX_MATCH_MS and (best is None or gap < best[0]):
                    best = (gap, j)
        return None if best is None else dict(self._fixes[best[1]])
