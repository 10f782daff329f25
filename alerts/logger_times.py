"""The times of a logger file: each row's time cells to epoch ms, decided for the whole file.

Vendors write ISO 8601 (with or without an offset), epoch seconds or ms, or a date of three
numbers in some order (``14/07/2026``, ``07/14/26 07:40:00 AM``, ``14.07.2026``) and a clock.
The order of a date's fields is decided once for the file, never per row: given
(``--date-order``), else the only order every row is a valid date in (a field above 12 is a
day, four digits a year), else the order under which consecutive rows are not weeks apart;
a file still undecided is an error, never a guess. Times without an offset are local wall
times in the file's zone (a zone named in the header, else ``--tz``; an error when neither):
the autumn hour that repeats is told apart by time going backwards (the second pass is the
later instant), and a wall time that does not exist (the spring gap) is an error naming the
line, since the logger's clock was then not in that zone.

Why not ``dateutil.parser``: it decides the order per value (``14/07/2026`` is read
day-first even with ``dayfirst=False``), which is exactly the silent per-row guess a signed
verdict cannot rest on; the three-number dates loggers write need a regular expression, and
the rest is ``datetime.fromisoformat``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from itertools import pairwise
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DateOrder = Literal["dmy", "mdy", "ymd"]
DATE_ORDERS: Final[tuple[DateOrder, ...]] = ("dmy", "mdy", "ymd")
# Two orders that both read every row are told apart when one of them puts consecutive rows
# this far apart and the other does not (a day read as a month moves a date by weeks).
WEEKS_APART: Final = timedelta(days=7)

EPOCH = re.compile(r"\d{9,13}(?:\.\d+)?")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]|$)")
# European zone abbreviations loggers append to times (unambiguous ones only: CST or IST
# mean different zones in different countries), hours east of UTC.
ABBREVIATIONS: Final = {
    "GMT": 0, "UTC": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "MEZ": 1,
    "CEST": 2, "MESZ": 2, "EET": 2, "EEST": 3,
}  # fmt: skip
# Month names and abbreviations (English, French, German) in dates like 14-Jul-2026.
MONTHS: Final = {
    name: i + 1
    for i, names in enumerate(
        [
            "jan january janv janvier januar", "feb february fév févr février fev fevr februar",
            "mar march mars mär märz", "apr april avr avril", "may mai", "jun june juin juni",
            "jul july juil juillet juli", "aug august aoû août aout", "sep sept september",
            "oct october octobre okt oktober", "nov november novembre",
            "dec december déc décembre dezember dez",
        ]
    )
    for name in names.split()
}  # fmt: skip
_CLOCK = (
    r"(?:[T ,]+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,6}))?)?"
    r"\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?)?"
    r"\s*(?P<zone>(?:GMT|UTC)?\s*[+\-\u2212]\d{1,2}(?::?\d{2})?|[A-Z]{1,4})?"
)
NUMERIC = re.compile(r"(?P<a>\d{1,4})(?P<sep>[./-])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{1,4})" + _CLOCK)
NAMED = re.compile(
    r"(?:(?P<d>\d{1,2})[-. ](?P<mon>[^\W\d_]{3,9})\.?[-. ](?P<y>\d{2}|\d{4})"
    r"|(?P<mon2>[^\W\d_]{3,9})\.? (?P<d2>\d{1,2}),? (?P<y2>\d{4}))" + _CLOCK
)
OFFSET = re.compile(r"(?:GMT|UTC)?\s*([+\-\u2212])\s*(\d{1,2})(?::?(\d{2}))?")
HEADER_OFFSET = re.compile(
    r"\b(?:GMT|UTC)(?:\s*([+\-\u2212])\s*(\d{1,2})(?::?(\d{2}))?)?(?![A-Za-z])"
)
PREAMBLE_ZONE = re.compile(
    r"^\W*(?:time\s*zone|fuseau(?:\s+horaire)?|zeitzone|zona\s+horaria|fuso\s+orario)"
    r"\s*[:;=,\t]\s*(.+?)[\s;,\t]*$",
    re.I,
)
IANA = re.compile(r"\b[A-Z][A-Za-z_]+(?:/[A-Za-z_\-+0-9]+)+")


class TimeError(ValueError):
    """A time the file cannot give; the message says what to pass or fix."""


def parse_zone(text: str) -> tzinfo:
    """An IANA zone name (``Europe/Paris``, ``UTC``) or a fixed offset (``+02:00``,
    ``UTC+2``, ``GMT-05:00``)."""
    text = text.strip()
    if m := OFFSET.fullmatch(text):
        return _fixed(m[1], m[2], m[3])
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeError(
            f"unknown time zone {text!r}: use an IANA name (Europe/Paris, UTC) or an offset "
            "(+02:00)"
        ) from None


def _fixed(sign: str, hours: str, minutes: str | None) -> timezone:
    delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
    return timezone(-delta if sign in "-\u2212" else delta)


def header_zone(names: Sequence[str]) -> tzinfo | None:
    """The zone the time columns' headers state (``Date Time, GMT+02:00``,
    ``Time (UTC)``, ``Zeit (Europe/Berlin)``), or None."""
    for name in names:
        if m := HEADER_OFFSET.search(name):
            return UTC if m[1] is None else _fixed(m[1], m[2], m[3])
        for candidate in IANA.findall(name):
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return None


def preamble_zone(lines: Sequence[str]) -> tzinfo | None:
    """The zone a preamble line states (``Time zone: Europe/Paris``, ``Fuseau horaire;UTC``),
    when it is a zone name or an offset and nothing else: a Windows-style
    ``(UTC+01:00) Brussels, Paris`` names a zone with summer time by its winter offset, and
    is not taken for a fixed offset."""
    for line in lines:
        if m := PREAMBLE_ZONE.match(line):
            try:
                return parse_zone(m[1].strip("\"' "))
            except TimeError:
                return None
    return None


@dataclass(frozen=True, slots=True)
class RawTime:
    """One row's time as written: epoch ms, or a wall time (date fields not yet ordered)
    with its offset when the row states one."""

    epoch_ms: int | None = None
    iso: datetime | None = None  # ISO 8601: fields already ordered, maybe with tzinfo
    fields: tuple[int, int, int] | None = None  # the date's three numbers, as written
    year_digits: tuple[int, int, int] = (0, 0, 0)  # how many digits each field had
    clock: tuple[int, int, int, int] = (0, 0, 0, 0)  # h, min, s, microseconds
    offset: tzinfo | None = None


def read_time(text: str) -> RawTime:
    """One row's time cells, joined by a space; ValueError when it is not a time."""
    text = text.strip()
    if EPOCH.fullmatch(text):
        value = float(text)
        return RawTime(epoch_ms=round(value if value >= 1e11 else value * 1000))
    if ISO_DATE.match(text):
        return RawTime(iso=datetime.fromisoformat(text.replace("Z", "+00:00")))
    m = NUMERIC.fullmatch(text)
    if m is None:
        if (n := NAMED.fullmatch(text)) is None:
            raise ValueError(text)
        month = MONTHS.get((n["mon"] or n["mon2"]).lower())
        if month is None:
            raise ValueError(text)
        year, day = n["y"] or n["y2"], n["d"] or n["d2"]
        clock, offset = _clock(n)
        h, mi, sec, us = clock
        wall = datetime(_year(int(year), len(year)), month, int(day), h, mi, sec, us, offset)
        return RawTime(iso=wall)  # the month named: no order to decide
    clock, offset = _clock(m)
    return RawTime(
        fields=(int(m["a"]), int(m["b"]), int(m["c"])),
        year_digits=(len(m["a"]), len(m["b"]), len(m["c"])),
        clock=clock,
        offset=offset,
    )


def _clock(m: re.Match[str]) -> tuple[tuple[int, int, int, int], tzinfo | None]:
    """(h, min, s, microseconds) and the offset a time states, from NUMERIC or NAMED."""
    hour = int(m["h"] or 0)
    if m["ampm"]:
        if not 1 <= hour <= 12:
            raise ValueError(m[0])
        hour = hour % 12 + (12 if m["ampm"][0] in "Pp" else 0)
    clock = (hour, int(m["mi"] or 0), int(m["s"] or 0), int((m["frac"] or "0").ljust(6, "0")))
    zone = m["zone"]
    if not zone:
        return clock, None
    if zone in ABBREVIATIONS:
        return clock, timezone(timedelta(hours=ABBREVIATIONS[zone]))
    if zone.isalpha():
        raise ValueError(zone)
    return clock, parse_zone(zone)


def _year(value: int, digits: int) -> int:
    # Two-digit years as POSIX strptime %y windows them: 69-99 is 19xx, 00-68 20xx.
    if digits <= 2:
        return value + (1900 if value >= 69 else 2000)
    return value


def _wall(raw: RawTime, order: DateOrder) -> datetime:
    """The row's wall time under ``order``; ValueError when it is no date that way."""
    if raw.iso is not None:
        return raw.iso
    assert raw.fields is not None
    a, b, c = raw.fields
    da, _, dc = raw.year_digits
    if order == "ymd":
        if da not in (2, 4):
            raise ValueError("year")
        y, mo, d = _year(a, da), b, c
    else:
        if dc not in (2, 4) or da > 2:
            raise ValueError("year")
        y, mo, d = (_year(c, dc), b, a) if order == "dmy" else (_year(c, dc), a, b)
    h, mi, s, us = raw.clock
    return datetime(y, mo, d, h, mi, s, us, tzinfo=raw.offset)


def _max_step(walls: list[datetime]) -> timedelta:
    naive = [w.replace(tzinfo=None) for w in walls]
    return max((abs(b - a) for a, b in pairwise(naive)), default=timedelta(0))


def decide_order(
    raws: Sequence[RawTime], lines: Sequence[int], given: DateOrder | None
) -> DateOrder:
    """The order of the file's three-number dates (see the module's docstring)."""
    if given is not None:
        for raw, line in zip(raws, lines, strict=True):
            try:
                _wall(raw, given)
            except ValueError:
                raise TimeError(
                    f"line {line}: the time is not a valid date in {given} order"
                ) from None
        return given
    numeric = [r for r in raws if r.fields is not None]
    if not numeric:
        return "ymd"  # ISO or epoch only: no order to decide
    walls: dict[DateOrder, list[datetime]] = {}
    for order in DATE_ORDERS:
        try:
            walls[order] = [_wall(r, order) for r in numeric]
        except ValueError:
            continue
    if not walls:
        raise TimeError(
            f"line {lines[0]}: the dates fit no single order (day/month/year, month/day/year "
            "or year/month/day) for every row"
        )
    if len(walls) == 1:
        return next(iter(walls))
    steps = {order: _max_step(w) for order, w in walls.items()}
    best = min(steps, key=lambda o: steps[o])
    if all(steps[o] >= WEEKS_APART and steps[o] > steps[best] for o in steps if o != best):
        return best
    raise TimeError(
        f"cannot tell the order of the dates ({' or '.join(walls)} both read every row): "
        f"pass --date-order {'|'.join(walls)}"
    )


def resolve(
    raws: Sequence[RawTime],
    lines: Sequence[int],
    zone: tzinfo | None,
    order: DateOrder,
) -> list[int]:
    """Each row's epoch ms. ``zone``: where times without an offset are local (None: such a
    time is an error saying to pass --tz). The repeated autumn hour: of a wall time's two
    instants, the earliest one not before the previous row's (so the second pass, where
    wall time went backwards, is the later one). Rows are taken as oldest first, as
    loggers write them."""
    walls: list[datetime | int] = [
        r.epoch_ms if r.epoch_ms is not None else _wall(r, order) for r in raws
    ]
    naive = [w for w in walls if isinstance(w, datetime) and w.tzinfo is None]
    if naive and zone is None:
        raise TimeError(
            "the times have no UTC offset and the header names no zone: pass --tz with the "
            "logger's zone (e.g. --tz Europe/Paris, or --tz +01:00 for a fixed offset)"
        )
    out: list[int] = []
    previous: int | None = None
    for w, line in zip(walls, lines, strict=True):
        if isinstance(w, int):
            ms = w
        elif w.tzinfo is not None:
            ms = round(w.timestamp() * 1000)
        else:
            assert zone is not None
            ms = _local(w, zone, previous, line)
        out.append(ms)
        previous = ms
    return out


def _local(wall: datetime, zone: tzinfo, previous: int | None, line: int) -> int:
    wall = wall.replace(microsecond=wall.microsecond // 1000 * 1000)
    instants = sorted(
        {
            ms
            for fold in (0, 1)
            if datetime.fromtimestamp(
                (ms := round(wall.replace(tzinfo=zone, fold=fold).timestamp() * 1000)) / 1000,
                zone,
            ).replace(tzinfo=None)
            == wall
        }
    )
    if not instants:
        raise TimeError(
            f"line {line}: {wall:%Y-%m-%d %H:%M} does not exist in {zone} (the clocks "
            "went forward then): the logger's clock was not on that zone's time; pass "
            "--tz with its fixed offset (e.g. --tz +01:00)"
        )
    if previous is None or instants[0] >= previous or len(instants) == 1:
        return instants[0]
    return instants[1]
