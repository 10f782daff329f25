"""NMEA 0183 from a GNSS receiver: RMC (position, speed, UTC date and time) and GGA (fix
quality, HDOP) from every constellation's talker (NMEA 0183 4.11: GP GPS, GL GLONASS,
GA Galileo, GB BeiDou (BD before 4.11), GQ QZSS, GI NavIC, GN several at once). A sentence
counts only with a valid checksum; anything else on the line (noise, a cut-off sentence) is
rejected, and a valid sentence it does not use is counted. Never raises: a GNSS serial line
is a hostile input.

One parser for two interpreters: the sensor box runs this file as ``nmea`` on MicroPython
(``firmware/nmea.py`` is a link to it) and the in-cab gateway imports it as ``coldtrace.nmea``
on CPython. So it keeps to what both share: no ``micropython`` or ``typing`` import at run
time (MicroPython compiles annotations and ignores them), and little heap.
"""

try:  # noqa: SIM105 (MicroPython has no contextlib)
    from typing import Any  # only for the annotations, which MicroPython never evaluates
except ImportError:  # MicroPython: no typing module
    pass

# Two bytes each, in one object (a tuple of eight costs heap the device is short of).
_TALKERS = b"GPGNGLGAGBBDGQGI"
_KNOTS_TO_KMH = 1.852
_DAY_MS = 86400000


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to the given Gregorian date (H. Hinnant's algorithm)."""
    y -= 1 if m <= 2 else 0
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _fields(line: bytes) -> "list[bytes] | None":
    """The comma-separated fields of a checksummed sentence, or None."""
    start = line.find(b"$")
    star = line.find(b"*", start)
    if start < 0 or star < 0 or len(line) < star + 3:
        return None
    check = 0
    for b in line[start + 1 : star]:
        check ^= b
    if check != int(line[star + 1 : star + 3], 16):
        return None
    return bytes(line[start + 1 : star]).split(b",")


def _degrees(value: bytes, hemisphere: bytes) -> "float | None":
    if not value:
        return None
    dot = value.find(b".")
    dot = len(value) if dot < 0 else dot
    deg = int(value[: dot - 2]) + float(value[dot - 2 :]) / 60
    return -deg if hemisphere in (b"S", b"W") else deg


def _time_ms(hhmmss: bytes) -> int:
    h, m = int(hhmmss[0:2]), int(hhmmss[2:4])
    if h > 23 or m > 59:
        raise ValueError
    return (h * 3600 + m * 60) * 1000 + round(float(hhmmss[4:]) * 1000)


def parse(line: bytes) -> "tuple[Any, ...] | None":
    """One sentence (bytes) to a tuple, or None when it is damaged:

    ("RMC", utc_ms or None, lat, lon, speed_kmh): lat/lon None when the fix is void;
    ("GGA", lat, lon, hdop): lat/lon None when there is no fix;
    ("",) for any other valid sentence (GSA, GSV, a talker that is no GNSS).
    Degrees are decimal (south and west negative), speed in km/h, utc_ms UTC epoch ms.
    """
    try:
        f = _fields(line)
        if f is None:
            return None
        if _TALKERS.find(f[0][:2]) % 2 or len(f[0]) != 5:  # -1 (absent) is odd too
            return ("",)
        kind = f[0][2:]
        if kind == b"RMC":
            t, d = f[1], f[9]
            utc = None
            if t and len(d) == 6:
                # Two-digit year: 80-99 is 19xx (GPS time began in 1980), 00-79 20xx. A module
                # whose week counter rolled over says 99 for 2019: 1999, which the clock refuses.
                y = int(d[4:6])
                day = days_from_civil(y + (1900 if y >= 80 else 2000), int(d[2:4]), int(d[0:2]))
                utc = day * _DAY_MS + _time_ms(t)
            if f[2] != b"A":
                return ("RMC", utc, None, None, None)
            speed = float(f[7]) * _KNOTS_TO_KMH if f[7] else None
            return ("RMC", utc, _degrees(f[3], f[4]), _degrees(f[5], f[6]), speed)
        if kind == b"GGA":
            if f[6] in (b"", b"0"):
                return ("GGA", None, None, None)
            hdop = float(f[8]) if f[8] else None
            return ("GGA", _degrees(f[2], f[3]), _degrees(f[4], f[5]), hdop)
        return ("",)
    except (ValueError, IndexError):
        return None


class Gps:
    """The latest fix from a stream of sentences, and the UTC time of the latest RMC.

    `up_ms` everywhere is the caller's monotonic clock in ms (the box's uptime, the gateway's
    monotonic clock); a fix older than `max_age_ms` on that clock is stale.
    """

    def __init__(self, max_age_ms: int = 10000) -> None:
        self.max_age_ms = max_age_ms
        # {"lat", "lon", "speed_kmh", "hdop"} of the latest valid RMC
        self.fix: dict[str, float | None] | None = None
        self.fix_up = 0  # up_ms when it arrived
        self.utc_ms: int | None = None  # UTC of the latest valid RMC
        self.utc_up = 0
        self.rejected = 0  # damaged lines: bad checksum, cut off, noise
        self.unsupported = 0  # valid sentences it does not use (GSA, GSV, VTG...)
        self._hdop: float | None = None

    def feed(self, line: bytes, up_ms: int) -> "tuple[Any, ...] | None":
        """Take one line; returns what `parse` made of it."""
        s = parse(line)
        if s is None:
            self.rejected += 1
        elif s[0] == "":
            self.unsupported += 1
        elif s[0] == "RMC":
            if s[2] is None or s[3] is None:
                self.fix = None  # void: its time may be the module's own unset clock
            else:
                self.fix = {"lat": s[2], "lon": s[3], "speed_kmh": s[4], "hdop": self._hdop}
                self.fix_up = up_ms
                if s[1] is not None:
                    self.utc_ms, self.utc_up = s[1], up_ms
        elif s[0] == "GGA":
            self._hdop = s[3]
            if self.fix is not None:
                self.fix["hdop"] = s[3]
        return s

    def current(self, up_ms: int) -> "dict[str, float] | None":
        """The fix for a reading taken now, without fields unknown; None if stale or void."""
        if self.fix is None or up_ms - self.fix_up > self.max_age_ms:
            return None
        out = {}
        for k, v in self.fix.items():
            if v is not None:
                out[k] = v
        return out
