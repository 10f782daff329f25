"""What ingest tells its after-store observers (the rules stage), and what it asks of them
for /health and /metrics: shared vocabulary of ingest and the stages above it, so neither
imports the other.

Ingest does not know who observes: the entry point (coldtrace/bootstrap.py) passes them in,
as a list, and each stored batch is handed to them in that order. ``observe`` and ``reread``
run on ingest's writer thread, between a batch's write and its ack, so they never block: an
observer with real work queues it for a thread of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coldtrace.records import PlacedReading


@dataclass(frozen=True)
class ObserverHealth:
    """An observer's part of ingest's /health: ``checks`` join ingest's own (each named, all
    must pass for a 200), ``reasons`` say why one fails (one line each), ``details`` are shown
    beside them."""

    checks: dict[str, bool] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)


class Observer:
    """One after-store observer (e.g. alerts.stage.RulesObserver); a subclass overrides what
    it uses. The defaults watch
    nothing: no thread to start, always alive, nothing to report."""

    name = "observer"  # in the log and the failure when it dies: "<name> died"

    def observe(self, placed: list[PlacedReading]) -> None:
        """A batch's readings, stored in InfluxDB."""

    def reread(self, placed: list[PlacedReading]) -> None:
        """A batch InfluxDB refused, then stored message by message: some of these readings
        may have been dead-lettered instead; what was stored is in InfluxDB."""
        self.observe(placed)

    def start(self) -> None:
        """Before ingest consumes its first message."""

    def stop(self) -> None:
        """After ingest's writer stopped: no more batches."""

    def alive(self) -> bool:
        """False ends ingest (non-zero exit, for its supervisor to restart it)."""
        return True

    def every_minute(self) -> None:
        """Called from ingest's main loop about once a minute."""

    def health(self) -> ObserverHealth:
        return ObserverHealth()

    def metrics(self) -> dict[str, int]:
        """Figures for ingest's /metrics: names without the ``coldtrace_`` prefix, Prometheus
        labels allowed."""
        return {}
