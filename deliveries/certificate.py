"""What a delivery's certificate says. Pure: the same breaches give the same body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deliveries.trace import BreachMark, iso

COMPLIANT = "compliant"
NOT_COMPLIANT = "not_compliant"


def certificate_body(
    delivery: Mapping[str, Any], start: int, end: int, breaches: Sequence[BreachMark]
) -> tuple[str, dict[str, Any]]:
    """(verdict, body): compliant unless a breach that was not suppressed (defrost, loading)
    overlaps the delivery."""
    counted = [b for b in breaches if not b.extra.get("suppressed")]
    verdict = NOT_COMPLIANT if counted else COMPLIANT
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
