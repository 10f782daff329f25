"""What every command prints the same way: tables for people, JSON for scripts, progress."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence


def table(rows: Sequence[dict[str, object]]) -> str:
    if not rows:
        return "(nothing)"
    cols = list(rows[0])
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
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


def iso_time(ms: int | None) -> str | None:
    """An epoch time (ms) as ISO 8601 UTC for a table, None for none."""
    from coldtrace.deliveries.trace import iso

    return None if ms is None else iso(ms)
