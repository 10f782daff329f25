"""Breaches as the rules stage (alerts/) stores them, for the tests and benchmarks that need
one in the store without running the rules."""

from __future__ import annotations

from coldtrace.breaches import Breach


def breach_row(device: str, start_ms: int, end_ms: int | None, **columns: object) -> Breach:
    """A major excursion above +4 C of the device's product probe under the chilled profile,
    from `start_ms` to `end_ms` (epoch ms; None: still open), peak 6.0 C, 20 degree-minutes,
    detected and updated at its start; `columns` replace any of these."""
    defaults: dict[str, object] = {
        "probe": "product",
        "rule": "excursion",
        "profile": "chilled",
        "state": "open" if end_ms is None else "closed",
        "severity": "major",
        "peak": 6.0,
        "degree_minutes": 20.0,
        "limit_c": 4.0,
        "suppressed": False,
        "detected_late": False,
        "detected_at": start_ms,
        "updated_at": start_ms,
    }
    return Breach(device=device, start_ts=start_ms, end_ts=end_ms, **(defaults | columns))
