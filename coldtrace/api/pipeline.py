"""What the API knows of ingest's state: it asks ingest's /health (COLDTRACE_INGEST_HEALTH_URL),
so that its own /health and the fleet view show probes the rules stage stopped judging."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

# Ingest answers from memory; longer than this and it is as good as unreachable.
TIMEOUT_S = 2.0


@dataclass(frozen=True)
class IngestState:
    """``status``: "ok", "failing" (ingest says why in ``reasons``) or "unreachable".
    ``quarantined``: "device/probe" of each probe the rules stage does not judge."""

    status: str
    reasons: list[str]
    quarantined: list[str] = field(default_factory=list)


def ingest_state(url: str | None) -> IngestState | None:
    """Ingest's /health at ``url`` (None: not configured, nothing to report)."""
    if url is None:
        return None
    health = url.rstrip("/") + "/health"
    try:
        body = httpx.get(health, timeout=TIMEOUT_S).json()
        reasons = [str(r) for r in body.get("reasons", [])]
        quarantined = [
            f"{q['device']}/{q['probe'] or '(door)'}" for q in body.get("rules_quarantined", [])
        ]
        status = "ok" if body.get("status") == "ok" else "failing"
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return IngestState("unreachable", [f"ingest unreachable at {health}: {exc}"])
    return IngestState(status, reasons, quarantined)
