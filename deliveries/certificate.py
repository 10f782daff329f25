"""What a delivery's certificate says. Pure: the same breaches give the same body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deliveries.trace import BreachMark, iso

COMPLIANT = "compliant"
NOT_COMPLIANT = "not_compliant"
INCOMPLETE = "incomplete"
# The device went quiet on the delivery for longer than COLDTRACE_ALERTS_SILENT_AFTER_S
# (alerts/silence.py): the record cannot vouch for the goods then.
SILENCE_RULE = "device_silent"


def certificate_body(
    delivery: Mapping[str, Any], start: int, end: int, breaches: Sequence[BreachMark]
) -> tuple[str, dict[str, Any]]:
    """(verdict, body): not compliant when a breach that was not suppressed (defrost,
    loading) overlaps the delivery, a door left open past the profile's limit included;
    else incomplete when its device was silent then; else compliant."""
    counted = [b for b in breaches if not b.extra.get("suppressed")]
    if any(b.rule != SILENCE_RULE for b in counted):
        verdict = NOT_COMPLIANT
    else:
        verdict = INCOMPLETE if counted else COMPLIANT
    return verdict, {
        **delivery,
        "start": iso(start),
        "end": iso(end),
        "verdict": verdict,
        "breaches": [
            {
                "id": b.id,
                "device": b.device,
                "probe": b.probe,
                "rule": b.rule,
                "severity": b.severity,
                "start": iso(b.start),
                "end": None if b.end is None else iso(b.end),
                "suppressed": bool(b.extra.get("suppressed")),
            }
            for b in breaches
        ],
    }
