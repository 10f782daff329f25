# Time on the device: `up` (ms since boot, from ticks_ms across its wrap-around) and the UTC
# clock, unknown until NTP or the GPS has set it.
import time

# The date this firmware was built (a release sets it): a source saying earlier is a module
# with an unset RTC or a rolled-over GPS week (1999 for 2019), not the time.
BUILD_EPOCH_MS = 1767225600000  # 2026-01-01T00:00:00Z
# Nor is a time more than this after the build: the device's service life (a bad year
# such as 2099 from a two-digit year read wrongly is refused).
MAX_AHEAD_MS = 10 * 366 * 86400000
# Seconds from 1970 to the port's epoch (2000 on the ESP32, 1970 on the unix port).
PORT_EPOCH_S = 946684800 if time.gmtime(0)[0] == 2000 else 0


class Uptime:
    """Milliseconds since start, exact across ticks_ms() wrap-around (about 12 days on the
    ESP32) as long as it is read at least once per half period, which the sampler does."""

    def __init__(self, ticks_ms=time.ticks_ms):
        self._ticks_ms = ticks_ms
        self._last = ticks_ms()
        self._up = 0

    def ms(self):
        now = self._ticks_ms()
        self._up += time.ticks_diff(now, self._last)
        self._last = now
        return self._up


class Clock:
    def __init__(self, uptime):
        self.uptime = uptime
        self._offset = None  # UTC epoch ms minus uptime ms
        self.source = None

    def synced(self):
        return self._offset is not None

    def set(self, epoch_ms, source, up_ms=None):
        """Set from a time source; `up_ms` is when that time was read (default: now)."""
        # GPS or NTP alike: False, the clock unchanged, for a time before the firmware's
        # build or more than MAX_AHEAD_MS after it.
        if not BUILD_EPOCH_MS <= epoch_ms <= BUILD_EPOCH_MS + MAX_AHEAD_MS:
            return False
        self._offset = epoch_ms - (self.uptime.ms() if up_ms is None else up_ms)
        self.source = source
        return True

    def now_ms(self):
        """UTC epoch ms, or None while no source has set the clock."""
        up = self.uptime.ms()
        return None if self._offset is None else self._offset + up


def ntp_sync(clock):
    """Set the clock by NTP (needs the network); False when the server did not answer."""
    import ntptime

    try:
        seconds = ntptime.time()
    except (OSError, IndexError):
        return False
    return clock.set((seconds + PORT_EPOCH_S) * 1000, "ntp")
