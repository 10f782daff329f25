"""What every command prints the same way: tables for people, JSON for scripts, progress."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence


class Instant(str):
    """An ISO 8601 UTC time as ``iso_time`` writes it, "2026-01-05T08:30:00.123000Z" (the
    API's form: microseconds only when set): the JSON output carries it whole, a table shows
    it to the second (``to_second``)."""

    __slots__ = ()

    def to_second(self) -> str:
        """To the second, "2026-01-05T08:30:00Z": the fraction of a second dropped."""
        return self[:19] + "Z"


def _cell(value: object) -> str:
    """What a table shows of a value: none as an empty cell, a boolean as yes/no, an
    ``Instant`` to the second; else the value as it prints."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Instant):
        return value.to_second()
    return str(value)


def table(rows: Sequence[dict[str, object]]) -> str:
    """Rows as an aligned plain-text table for people: the columns of the first row, headed
    in capitals, numbers right-aligned, values as ``_cell`` shows them; "(nothing)" for no
    rows. ``emit``'s JSON gives scripts the values themselves."""
    if not rows:
        return "(nothing)"
    cols = list(rows[0])
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    head = "  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True))
    body = [
        "  ".join(
            v.rjust(w) if v.removeprefix("-").replace(".", "", 1).isdigit() else v.ljust(w)
            for v, w in zip(row, widths, strict=True)
        )
        for row in cells
    ]
    return "\n".join([head, *body])


def emit(rows: list[dict[str, object]], as_json: bool) -> None:
    print(json.dumps(rows, indent=2) if as_json else table(rows))


def progress_printer(label: str) -> Callable[[int, int], None]:
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 2 or done == total:
            last[0] = now
            pct = 100 * done // max(total, 1)
            print(f"    {label} {done}/{total} readings ({pct}%)", file=sys.stderr, flush=True)

    return show


def iso_time(ms: int | None) -> Instant | None:
    """An epoch time (ms) as ISO 8601 UTC (JSON: as the API writes it; a table: to the
    second), None for none."""
    from coldtrace.deliveries.trace import iso

    return None if ms is None else Instant(iso(ms))
