"""What the gateway makes of one line from a box or a logger, and of an ack. Pure: no I/O.

Nothing here raises on bad input: each function returns a result or a ``Refused`` naming
why, which the caller counts and logs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from coldtrace.contract import Ack, TelemetryBatch


@dataclass(frozen=True)
class Refused:
    """A line not used: ``reason`` is a counter name (garbage, invalid, torn, ...)."""

    reason: str
    detail: str


@dataclass(frozen=True)
class BoxBatch:
    """A box's batch as the box sent it (validated against the contract): ``readings`` are
    the box's own dicts, so what is forwarded is what the box wrote, plus what the gateway
    adds. ``torn`` is the length of a cut-off line in front of it (a box reset mid-line)."""

    device: str
    boot: int
    readings: list[dict[str, Any]]
    dropped: list[tuple[int, int]]
    torn: int = 0


def _starts(line: bytes) -> list[int]:
    """Offsets after the first where a batch may begin: each ``{"``. Only a whole batch to
    the end of the line validates; any other candidate fails at its first object's end."""
    out = []
    i = line.find(b'{"', 1)
    while i > 0:
        out.append(i)
        i = line.find(b'{"', i + 1)
    return out


def box_line(line: bytes) -> BoxBatch | Refused:
    """One JSON line of a tethered box (firmware/tether.py) to its batch.

    A box that resets mid-line leaves the front of a batch and then, on the same line, the
    next batch whole: that one is kept (``torn`` > 0), the fragment counted.
    """
    refused = Refused("garbage", repr(line[:80]))
    if line.startswith(b"{"):
        try:
            return _batch(line, 0)
        except ValidationError as e:
            error = e.errors()[0]
            kind = "garbage" if error["type"] == "json_invalid" else "invalid"
            refused = Refused(kind, f"{error['msg']} at {error['loc']}"[:200])
    for start in _starts(line):
        try:
            return _batch(line, start)
        except ValidationError:
            continue
    return refused


def _batch(line: bytes, start: int) -> BoxBatch:
    text = line[start:] if start else line
    batch = TelemetryBatch.model_validate_json(text)
    return BoxBatch(
        device=batch.device,
        boot=batch.boot,
        readings=json.loads(text)["readings"],
        dropped=[(d.first, d.last) for d in batch.dropped],
        torn=start,
    )


def fahrenheit_to_celsius(value: float) -> float:
    """Degrees F to degrees C, to 0.01 C (a logger's own resolution is 0.1 F at best)."""
    return round((value - 32.0) * 5.0 / 9.0, 2)


@dataclass(frozen=True)
class LoggerColumns:
    """How a logger's CSV line reads: probe id -> column (0-based), the delimiter, the unit
    (C or F), and optionally the time's column, strptime format and zone."""

    probes: dict[str, int]
    delimiter: str = ","
    unit: str = "C"
    time_column: int | None = None
    time_format: str = "%Y-%m-%d %H:%M:%S"
    timezone: str = "UTC"


@dataclass(frozen=True)
class LoggerReading:
    """Probe id -> degrees C (None: the column was empty), and the logger's own time (UTC
    epoch ms) when it prints one."""

    probes: dict[str, float | None]
    ts: int | None


def logger_line(line: bytes, cols: LoggerColumns) -> LoggerReading | Refused:
    """One CSV line of a line logger to a reading.

    A header line (no number in any probe's column) is Refused("header"); a line too short
    for the mapping, not text, or with a time not in the format is Refused("garbage").
    """
    try:
        cells = line.decode("utf-8").split(cols.delimiter)
    except UnicodeDecodeError:
        return Refused("garbage", repr(line[:80]))
    out: dict[str, float | None] = {}
    numbers = 0
    for probe, column in cols.probes.items():
        if column >= len(cells):
            return Refused("garbage", f"no column {column} in {line[:80]!r}")
        cell = cells[column].strip().strip('"')
        if cols.delimiter != ",":
            cell = cell.replace(",", ".")  # a decimal comma, in ;-separated files
        try:
            value = float(cell)
        except ValueError:
            out[probe] = None
            continue
        if not math.isfinite(value):
            return Refused("garbage", f"{cell!r} is not a temperature")
        numbers += 1
        out[probe] = fahrenheit_to_celsius(value) if cols.unit == "F" else value
    if numbers == 0:
        return Refused("header", repr(line[:80]))
    ts = None
    if cols.time_column is not None:
        try:
            cell = cells[cols.time_column].strip().strip('"')
            local = datetime.strptime(cell, cols.time_format)
        except (IndexError, ValueError):
            return Refused("garbage", f"no time as {cols.time_format!r} in {line[:80]!r}")
        ts = int(local.replace(tzinfo=ZoneInfo(cols.timezone)).timestamp() * 1000)
    return LoggerReading(out, ts)


def ack(payload: bytes) -> Ack | None:
    """Ingest's end-to-end ack (contract v1.1, ``{"from": F, "seq": N}``), or None."""
    try:
        return Ack.model_validate_json(payload)
    except ValidationError:
        return None
