"""Read temperature-logger exports: a timestamp column (or a date and a time column) and one
or more temperature columns; ISO 8601, epoch or dd/mm/yyyy times; comma, semicolon or tab
separators; decimal commas; preamble lines before the header (as French exports have).
Naive local times are placed in the given time zone. Pure: parses text it is given.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

TIME_HEADER = re.compile(
    r"^(time|timestamp|date|heure|datetime|date/time|horodatage|zeit|datum|fecha|hora|"
    r"date et heure|date_time|epoch|ts)\b",
    re.IGNORECASE,
)
DAY_FIRST = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})$")
CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


class LoggerFileError(Exception):
    """A logger file that cannot be read; the message names the line and what to fix."""


@dataclass
class LoggerSeries:
    probes: list[str]
    times: list[int] = field(default_factory=list)  # epoch ms, in file order
    values: dict[str, list[float | None]] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)  # file line of each row


def _delimiter(line: str) -> str:
    return max(";\t,", key=line.count)


def _find_header(lines: list[str]) -> int:
    for i, line in enumerate(lines):
        cells = [c.strip() for c in next(csv.reader([line], delimiter=_delimiter(line)), [])]
        if len(cells) >= 2 and TIME_HEADER.match(cells[0]):
            return i
    raise LoggerFileError(
        "no header line found: expected a line whose first column is a time column "
        "(timestamp, time, date, ...) followed by temperature columns"
    )


def _parse_time(cells: list[str], tz: ZoneInfo, line_no: int) -> int:
    text = " ".join(c for c in cells if c)
    if re.fullmatch(r"\d{9,13}(\.\d+)?", text):
        value = float(text)
        return round(value if value >= 1e11 else value * 1000)  # ms or seconds
    parts = text.replace("T", " ", 1).split(" ", 1) if not re.match(r"^\d{4}-", text) else []
    try:
        if parts and (day := DAY_FIRST.match(parts[0])):
            clock = CLOCK.match(parts[1].strip()) if len(parts) > 1 else None
            if clock is None:
                raise ValueError
            dt = datetime(
                int(day[3]),
                int(day[2]),
                int(day[1]),
                int(clock[1]),
                int(clock[2]),
                int(clock[3] or 0),
            )
        else:
            dt = datetime.fromisoformat(text)
    except ValueError:
        raise LoggerFileError(
            f"line {line_no}: cannot read the time {text!r}: use ISO 8601 "
            "(2026-07-14T07:40:00+02:00), epoch seconds or ms, or dd/mm/yyyy hh:mm[:ss]"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return round(dt.timestamp() * 1000)


def _parse_value(cell: str, decimal_comma: bool, column: str, line_no: int) -> float | None:
    cell = cell.strip()
    if not cell:
        return None
    try:
        value = float(cell.replace(",", ".") if decimal_comma else cell)
    except ValueError:
        raise LoggerFileError(
            f"line {line_no}: {cell!r} in column {column!r} is not a temperature"
        ) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise LoggerFileError(f"line {line_no}: {cell!r} in column {column!r} is not finite")
    return value


def read_logger_csv(text: str, tz: ZoneInfo) -> LoggerSeries:
    lines = text.splitlines()
    head = _find_header(lines)
    delim = _delimiter(lines[head])
    header = [c.strip() for c in next(csv.reader([lines[head]], delimiter=delim))]
    time_cols = 2 if len(header) > 2 and TIME_HEADER.match(header[1]) else 1
    probes = header[time_cols:]
    if not probes:
        raise LoggerFileError(f"line {head + 1}: no temperature column after the time column")
    series = LoggerSeries(probes, values={p: [] for p in probes})
    decimal_comma = delim != ","
    for offset, row in enumerate(csv.reader(lines[head + 1 :], delimiter=delim)):
        line_no = head + 2 + offset
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise LoggerFileError(
                f"line {line_no}: {len(row)} columns where the header (line {head + 1}) "
                f"has {len(header)}"
            )
        series.times.append(_parse_time([c.strip() for c in row[:time_cols]], tz, line_no))
        series.lines.append(line_no)
        for probe, cell in zip(probes, row[time_cols:], strict=True):
            series.values[probe].append(_parse_value(cell, decimal_comma, probe, line_no))
    if not series.times:
        raise LoggerFileError(f"no readings after the header (line {head + 1})")
    return series


def decode_logger_file(data: bytes) -> str:
    """Loggers write UTF-8 (often with a BOM) or, on older Windows tools, cp1252."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")
