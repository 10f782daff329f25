"""Failures of the rules stage stay local and loud (issue 10).

An error while judging one probe (or a device's door or silence) quarantines that (device,
probe): logged once at ERROR with its traceback, counted, its later readings counted as
unjudged, and ingest's /health red while it lasts (until ingest restarts, when its engines
are rebuilt from InfluxDB). Other probes, devices and batches are judged as usual. What fails
as a whole (a batch, InfluxDB or the store away, the question which devices are on a
delivery) is kept by name until the next success clears it, and turns /health red
meanwhile. The certificate judges each delivery again from the stored readings
(coldtrace/certificates/), so readings the stage never judged are not lost to the verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from alerts.rules import Sample
from alerts.store import StoreUnavailable
from coldtrace.influx import InfluxUnavailable

log = logging.getLogger(__name__)
SILENCE = "(silence)"  # the quarantine key of a device's silence watch
ERROR_CHARS = 500  # an error is kept as "ExceptionType: message", cut to this length
Judging = Callable[[str, str, list[Sample]], None]  # (device, probe or door, samples)


@dataclass(frozen=True)
class Quarantine:
    """A (device, probe) the stage stopped judging after an error while judging it."""

    device: str
    probe: str  # a probe's name, "" for the door rules, SILENCE for the silence watch
    error: str  # "ExceptionType: message", at most ERROR_CHARS characters
    since_ms: int  # wall clock when it was quarantined


class Containment:
    """What the stage does not judge now, and why: for ingest's /health and /metrics.

    ``forget(device, probe)`` drops the half-built state of a probe it quarantines; ``clock``
    is the wall clock in seconds."""

    def __init__(self, clock: Callable[[], float], forget: Callable[[str, str], None]) -> None:
        self.clock = clock
        self.forget = forget
        # What is failing as a whole now, and why: "start" (watching the devices known
        # before the start), "batch" (an error lost a batch's judging; cleared by the next
        # batch judged), "outage" (InfluxDB or the store away: what waits is retried;
        # cleared by the next pass that works), "deliveries" (which devices are on a
        # delivery; cleared by the next answer).
        self.failing: dict[str, str] = {}
        self.quarantined: dict[tuple[str, str], Quarantine] = {}
        self.errors = 0
        self.last_error: str | None = None
        self.unjudged = 0  # readings of quarantined probes, counted per probe value

    def failed(self, what: str, error: str) -> None:
        self.errors += 1
        self.last_error = self.failing[what] = error[:ERROR_CHARS]

    def cleared(self, what: str) -> None:
        self.failing.pop(what, None)

    def judge(self, device: str, key: str, samples: list[Sample], judging: Judging) -> None:
        """Judge one probe's samples, unless it is quarantined (then they count as
        unjudged)."""
        if (device, key) in self.quarantined:
            self.unjudged += len(samples)
            return
        self.run(device, key, judging, device, key, samples)

    def run(self, device: str, key: str, work: Callable[..., object], *args: object) -> None:
        """Run the judging of one (device, probe): an error there quarantines that probe
        alone; the outage of InfluxDB or the store is the batch's and propagates."""
        if (device, key) in self.quarantined:
            return
        try:
            work(*args)
        except (InfluxUnavailable, StoreUnavailable):
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
            log.exception("rules: %s/%s quarantined: not judged until ingest restarts", device, key)
            self.errors += 1
            self.last_error = error
            self.quarantined[(device, key)] = Quarantine(
                device, key, error, int(self.clock() * 1000)
            )
            # half-built state must not be used again (a restart rebuilds it from InfluxDB)
            self.forget(device, key)

    def problems(self) -> list[str]:
        """Why the stage is not judging everything now, one line each ([] when it is)."""
        out = [f"rules: {what} failed: {why}" for what, why in sorted(self.failing.items())]
        out.extend(
            f"rules: {q.device}/{q.probe or '(door)'} quarantined: {q.error}"
            for q in self.quarantined.values()
        )
        return out
