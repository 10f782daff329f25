"""Read temperature-logger exports, whatever the vendor, into temperature series in Celsius.

The layout is found, not assumed: the separator (``,`` ``;`` or tab) and the header line are
the first line, after any preamble, whose cells name a time column and that the next line
follows with a time; footer lines after the data end the table. Each column is classified by
its header: the time (one date-and-time column, or a date and a time column, anywhere),
temperatures with their unit (C, F or K in the spellings vendors use: ``°F``, ``*C``,
``(F)``, ``[°C]``, ``degC``, ``Fahrenheit``, ``_c``...; converted to Celsius), and columns
that are not temperatures (an index, humidity, dew point, battery, event markers such as
``Logged``...), which are skipped and listed. A temperature column whose unit is unknown or
not stated is an error naming the column and saying what to pass (``--unit``, ``--skip``).
Values take a decimal point or a decimal comma; an empty cell or a logger's no-value
marker (``---``, ``Err``, ``N/A``) is a reading without a temperature, and ``NaN`` is
kept as such for the evaluation to call a probe fault. Times: alerts/logger_times.py.

Text: decode_logger_file. The byte-order mark says UTF-8, UTF-16 or UTF-32; without one,
UTF-16 shows as every other byte NUL; else UTF-8 if the bytes are UTF-8, else cp1252 (what
spreadsheets and older Windows tools write). A statistical detector (charset-normalizer) is
not used: on a short, mostly ASCII export it guesses among look-alike code pages, where this
order is exact for the encodings loggers and spreadsheets write.
Separators are chosen by the header (``csv.Sniffer`` was tried: it votes on character
frequencies, and a semicolon file with decimal commas gives it two plausible answers).
Pure: parses text it is given.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone, tzinfo
from typing import Final, Literal

from alerts.logger_times import (
    DateOrder,
    RawTime,
    TimeError,
    decide_order,
    header_zone,
    preamble_zone,
    read_time,
    resolve,
)

Unit = Literal["C", "F", "K"]
UNITS: Final[tuple[Unit, ...]] = ("C", "F", "K")
DELIMITERS: Final = ("\t", ";", ",")

TIME_HEADER = re.compile(
    r"^(time|timestamp|date|heure|datetime|date/time|horodatage|zeit|uhrzeit|datum|fecha|"
    r"hora|data|ora|tijd|tid|aika|czas|date et heure|date_time|epoch|unix|ts|utc)(\b|_)",
    re.IGNORECASE,
)
# Columns that are not product temperatures, by header. Checked before the temperature units,
# since a dew point or a heat index is written in degrees too.
NOT_TEMPERATURE: Final = (
    (
        "index",
        re.compile(r"^(#|n[o°º]\.?|nr\.?|index|idx|num(ber)?|record|row|line|sample)$", re.I),
    ),
    ("dew point", re.compile(r"dew\s*p(oin)?t|point de ros|taupunkt|roc[ií]o|\bdp\b", re.I)),
    ("heat index", re.compile(r"heat\s*index|wind\s*chill|wet\s*bulb|humidex", re.I)),
    ("humidity", re.compile(r"\b(rh|hr|r\.h\.)\b|humid|hygro|feucht|umidit|%", re.I)),
    ("battery", re.compile(r"batt|akku|\bpile\b|\bvbat|volt|tension|spannung|\(v\)", re.I)),
    ("signal", re.compile(r"rssi|signal|\blqi\b", re.I)),
    ("pressure", re.compile(r"press|druck|hpa|mbar", re.I)),
    ("light", re.compile(r"\blux\b|\blight\b|lumi", re.I)),
    ("CO2", re.compile(r"co2|ppm", re.I)),
    (
        "event marker",
        re.compile(
            r"logged|event|[ée]v[ée]nement|alarm|marker|\bmark|button|host|coupler|attached|"
            r"detached|stopped|end of file|status|[ée]tat|state|comment|note|remark|flag|"
            r"door|porte|\bt[üu]r\b|puerta",
            re.I,
        ),
    ),
)
UNIT_WORDS: Final = (("celsius", "C"), ("centigrade", "C"), ("fahrenheit", "F"), ("kelvin", "K"))
# A degree sign (or its stand-ins: the ordinal º, a ring, a star, "deg") and what follows it.
DEGREE = re.compile(r"(?:[°º˚*]|\bdeg(?:rees?)?\.?)\s*([A-Za-z]*)", re.I)
BRACKETED = re.compile(r"[(\[{]\s*([^()\[\]{}]*?)\s*[)\]}]")
SUFFIX = re.compile(r"_([cfk])$", re.I)
NO_VALUE = re.compile(r"-+|err(or)?|n/?a|#n/a|none|null|--\.-+|ovf|ol|\?+", re.I)
DECIMAL_COMMA = re.compile(r"[+\-\u2212]?\d*,\d+")
UNIT_CELL = re.compile(
    r"[\[(]?\s*(?:[°º˚*]?\s*[CFK]|%(?:\s*RH)?|V|mV|hPa|mbar|ppm|lux)\s*[\])]?", re.I
)
CELL_UNIT = re.compile(r"\s*[°º˚]?\s*([CFK])$", re.I)  # a value written with its unit: 3.0 °C
MINUS = "\u2212"


class LoggerFileError(Exception):
    """A logger file that cannot be read; the message names the line or column and what to
    pass or fix."""


@dataclass
class LoggerSeries:
    """A logger file's temperature columns. ``times``: epoch ms per data row, in file order;
    ``values``: per probe (its header as written), C per row, None for no value, NaN as
    written; ``lines``: each row's line in the file; ``skipped``: (column, what it is) of
    the columns that are not temperatures; ``units``: each probe's unit in the file;
    ``zone``: where the file's times are local (for showing them); ``footer``: the first
    and last line after the data that were not data."""

    probes: list[str]
    times: list[int] = field(default_factory=list)
    values: dict[str, list[float | None]] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    units: dict[str, Unit] = field(default_factory=dict)
    zone: tzinfo = UTC
    footer: tuple[int, int] | None = None
    delimiter: str = ","
    date_order: DateOrder = "ymd"


def decode_logger_file(data: bytes) -> tuple[str, str]:
    """The file's text and the encoding it was read in (see the module's docstring)."""
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return _decode(data, name), name
    head = data[:4096]
    if head.count(0) > len(head) // 4:  # UTF-16 without a BOM: ASCII with a NUL beside each
        name = "utf-16-le" if head[1::2].count(0) > head[0::2].count(0) else "utf-16-be"
        return _decode(data, name), name
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "cp1252"


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise LoggerFileError(
            f"byte {exc.start} is not {encoding} although the file says it is: re-export it"
        ) from None


def _cells(line: str, delimiter: str) -> list[str]:
    """A line's cells, stripped, without the empty ones a trailing separator leaves."""
    cells = [c.strip() for c in next(csv.reader([line], delimiter=delimiter), [])]
    while cells and not cells[-1]:
        cells.pop()
    return cells


@dataclass(frozen=True, slots=True)
class _Layout:
    head: int  # index of the header line
    delimiter: str
    header: list[str]
    time_cols: list[int]
    data: int  # index of the first line after the header (and its units line)


def _layout(lines: list[str]) -> _Layout:
    near: str | None = None  # a header whose next line's time cannot be read
    for i, line in enumerate(lines):
        for delimiter in DELIMITERS:
            if delimiter not in line:
                continue
            header = _cells(line, delimiter)
            time_cols = [j for j, name in enumerate(header) if TIME_HEADER.match(name)]
            if not time_cols or len(header) - len(time_cols) < 1 or len(time_cols) > 2:
                continue
            at = next((k for k in range(i + 1, len(lines)) if lines[k].strip()), None)
            if at is None:
                return _Layout(i, delimiter, header, time_cols, i + 1)
            row = _cells(lines[at], delimiter)
            if _units_row(row, time_cols):  # units under the names: Temp / °C
                header = [
                    f"{name} [{row[j]}]" if j < len(row) and row[j] else name
                    for j, name in enumerate(header)
                ]
                return _Layout(i, delimiter, header, time_cols, at + 1)
            if len(row) > max(time_cols) and _looks_like_time(row, time_cols):
                return _Layout(i, delimiter, header, time_cols, i + 1)
            if near is None and len(row) > max(time_cols):
                cells = " ".join(row[j] for j in time_cols)
                near = f"line {i + 1} looks like the header, but line {at + 1}'s time {cells!r}"
    if near is not None:
        raise LoggerFileError(
            f"{near} cannot be read: use ISO 8601 (2026-07-14T07:40:00+02:00), epoch seconds "
            "or ms, or a date and a clock (14/07/2026 07:40:00, 14-Jul-2026 07:40)"
        )
    raise LoggerFileError(
        "no header line found: expected a line naming a time column (timestamp, time, date, "
        "heure, datum...) and temperature columns, followed by a row of data"
    )


def _units_row(row: list[str], time_cols: list[int]) -> bool:
    """A line of units under the header: nothing under the time, short units elsewhere."""
    units = [c for j, c in enumerate(row) if j not in time_cols and c]
    return (
        bool(units)
        and all(j >= len(row) or not row[j] for j in time_cols)
        and all(UNIT_CELL.fullmatch(c) for c in units)
    )


def _looks_like_time(row: list[str], time_cols: list[int]) -> bool:
    try:
        read_time(" ".join(row[j] for j in time_cols))
    except ValueError:
        return False
    return True


def unit_of(name: str) -> Unit | None:
    """The temperature unit a column's header states, or None when it states none;
    LoggerFileError for a unit it does not know."""
    lowered = name.lower()
    for word, unit in UNIT_WORDS:
        if word in lowered:
            return unit  # type: ignore[return-value]
    for m in DEGREE.finditer(name):
        token = m[1]
        if token.upper() in UNITS and len(token) == 1:
            return token.upper()  # type: ignore[return-value]
        if token:
            raise LoggerFileError(
                f"column {name!r}: unknown unit {m[0]!r}: name the unit °C, °F or K in the "
                "header, or pass --unit C|F|K"
            )
    for m in BRACKETED.finditer(name):
        if m[1].upper() in UNITS:
            return m[1].upper()  # type: ignore[return-value]
    if m2 := SUFFIX.search(name):
        return m2[1].upper()  # type: ignore[return-value]
    return None


def _classify(
    layout: _Layout, unit: Unit | None, skip: Sequence[str]
) -> tuple[list[tuple[int, str, Unit]], list[tuple[int, str, str]]]:
    """(column, name, unit) of the temperature columns; (column, name, what) of the rest."""
    temperatures: list[tuple[int, str, Unit]] = []
    skipped: list[tuple[int, str, str]] = []
    # A mistyped --skip would otherwise leave the column it meant judged as a temperature.
    for name in skip:
        if name not in layout.header:
            columns = ", ".join(repr(n) for n in layout.header)
            raise LoggerFileError(f"--skip {name!r}: no such column (the columns: {columns})")
    for j, name in enumerate(layout.header):
        if j in layout.time_cols:
            continue
        if name in skip:
            skipped.append((j, name, "skipped by --skip"))
            continue
        if not name:
            raise LoggerFileError(f"column {j + 1} has no header: name it, or remove the column")
        kind = next((k for k, pattern in NOT_TEMPERATURE if pattern.search(name)), None)
        if kind is not None:
            skipped.append((j, name, kind))
            continue
        stated = unit_of(name)
        if stated is None and unit is None:
            raise LoggerFileError(
                f"column {name!r} states no unit: pass --unit C|F|K for its temperatures, "
                f"or --skip {name!r} if it is not a temperature"
            )
        taken = {n for _, n, _ in temperatures}
        probe = name if name not in taken else f"{name} (column {j + 1})"  # two alike
        temperatures.append((j, probe, stated or unit))  # type: ignore[arg-type]
    if not temperatures:
        raise LoggerFileError(
            f"line {layout.head + 1}: no temperature column (skipped: "
            f"{', '.join(f'{n!r} ({k})' for _, n, k in skipped) or 'none'})"
        )
    return temperatures, skipped


def to_celsius(value: float, unit: Unit) -> float:
    """A temperature in ``unit`` in C (rounded to 1e-6 C, below any logger's resolution, so
    a value written in F reads back as the C it was)."""
    if unit == "F":
        return round((value - 32.0) * 5.0 / 9.0, 6)
    if unit == "K":
        return round(value - 273.15, 6)
    return value


def _parse_value(cell: str, unit: Unit, column: str, line_no: int) -> float | None:
    if not cell or NO_VALUE.fullmatch(cell):
        return None
    text = cell.replace(MINUS, "-")
    if (written := CELL_UNIT.search(text)) is not None:
        if written[1].upper() != unit:
            raise LoggerFileError(
                f"line {line_no}: {cell!r} in column {column!r} is not in its unit ({unit})"
            )
        text = text[: written.start()]
    if DECIMAL_COMMA.fullmatch(text):
        text = text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        raise LoggerFileError(
            f"line {line_no}: {cell!r} in column {column!r} is not a temperature"
        ) from None
    return value if value != value else to_celsius(value, unit)


def read_logger_csv(
    text: str,
    tz: tzinfo | None = None,
    *,
    date_order: DateOrder | None = None,
    unit: Unit | None = None,
    skip: Sequence[str] = (),
) -> LoggerSeries:
    """Read a logger export (see the module's docstring). ``tz``: where times without an
    offset are local when the header names no zone; ``date_order``: of three-number dates,
    when the file cannot tell; ``unit``: of temperature columns whose header states none;
    ``skip``: headers of columns that are not temperatures."""
    lines = text.splitlines()
    layout = _layout(lines)
    temperatures, skipped = _classify(layout, unit, skip)
    width = len(layout.header)
    raws: list[RawTime] = []
    rows: list[list[str]] = []
    numbers: list[int] = []
    bad: tuple[int, str] | None = None  # the first line after the data that is not data
    for offset, line in enumerate(lines[layout.data :]):
        line_no = layout.data + 1 + offset
        if not line.strip():
            continue
        row = [c.strip() for c in next(csv.reader([line], delimiter=layout.delimiter))]
        problem = None
        if len(row) < width or any(row[width:]):  # (empty cells past it: trailing separators)
            count = len(_cells(line, layout.delimiter))
            problem = f"{count} columns where the header (line {layout.head + 1}) has {width}"
        else:
            row = row[:width]
            cells = " ".join(row[j] for j in layout.time_cols)
            try:
                raw = read_time(cells)
            except ValueError:
                problem = (
                    f"cannot read the time {cells!r}: use ISO 8601 (2026-07-14T07:40:00+02:00), "
                    "epoch seconds or ms, or a date and a clock (14/07/2026 07:40:00)"
                )
        if problem is not None:
            bad = bad or (line_no, problem)
            continue
        if bad is not None:  # data after a line that is not: that line is in the data
            raise LoggerFileError(f"line {bad[0]}: {bad[1]}")
        raws.append(raw)
        rows.append(row)
        numbers.append(line_no)
    if not raws:
        if bad is not None:
            raise LoggerFileError(f"line {bad[0]}: {bad[1]}")
        raise LoggerFileError(f"no readings after the header (line {layout.head + 1})")
    names = [layout.header[j] for j in layout.time_cols]
    zone = header_zone(names) or preamble_zone(lines[: layout.head]) or tz
    try:
        order = decide_order(raws, numbers, date_order)
        times = resolve(raws, numbers, zone, order)
    except TimeError as exc:
        raise LoggerFileError(str(exc)) from None
    except ValueError as exc:  # an ISO time fromisoformat took but cannot be placed
        raise LoggerFileError(f"a time cannot be read: {exc}") from None
    series = LoggerSeries(
        [name for _, name, _ in temperatures],
        times,
        {name: [] for _, name, _ in temperatures},
        numbers,
        [(name, kind) for _, name, kind in skipped],
        {name: u for _, name, u in temperatures},
        zone or _stated_offset(raws),
        (bad[0], _last_line(lines)) if bad else None,
        layout.delimiter,
        order,
    )
    for row, line_no in zip(rows, numbers, strict=True):
        for j, name, u in temperatures:
            series.values[name].append(_parse_value(row[j], u, name, line_no))
    return series


def _stated_offset(raws: list[RawTime]) -> tzinfo:
    """The offset the first row with one states (for showing times), else UTC."""
    for r in raws:
        stated = r.iso.tzinfo if r.iso is not None else r.offset
        if stated is not None:
            delta = stated.utcoffset(None) if r.iso is None else r.iso.utcoffset()
            return timezone(delta or timedelta(0))
    return UTC


def _last_line(lines: list[str]) -> int:
    return max((i + 1 for i, x in enumerate(lines) if x.strip()), default=len(lines))
