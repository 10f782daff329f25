"""What the engines report, made durable: every breach change is upserted in the store (with
its notifications queued in the outbox, alerts/notify.py sends them), logged, counted per
(rule, transition), and written to InfluxDB measurement ``breach`` (docs/storage-schema.md).
The store is written first and retried until it answers: the engine has moved on, so the
changes exist only here until stored.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

from alerts.rules import Event
from alerts.store import BreachStore, StoredChange, StoreUnavailable
from coldtrace.influx import InfluxClient, InfluxUnavailable

log = logging.getLogger(__name__)
MAX_RETRY_DELAY_S = 10.0


def breach_line(device: str, c: StoredChange) -> str:
    """One point of measurement ``breach`` (docs/storage-schema.md), at the transition's
    device time: the start when opened, the end when closed, the reading an open breach's
    figures run up to (``through``) when updated.

    An ``updated`` point carries the figures only, no ``state``, ``severity`` or ``profile``:
    Grafana reads a breach's state from the last point of its series that has one, and a
    point at ``through`` can sort after the point of its close (a close at its first reading
    back within the hysteresis, a stretch closed where a delivery ended); its figures
    (``last("peak")``) are read only while the state says open, when nothing sorts after it."""
    b = c.breach
    ts = {"opened": b.start_ts, "closed": b.end_ts, "updated": b.through_ts}.get(
        c.transition
    ) or c.at
    tags = f"breach,device={device},rule={b.rule},transition={c.transition}"
    if b.probe:
        tags += f",probe={b.probe}"
    fields = [f"id={b.id}i", f"start={b.start_ts}i", f"degree_minutes={float(b.degree_minutes)}"]
    if c.transition != "updated":
        fields += [
            f'profile="{b.profile}"',
            f'severity="{b.severity}"',
            f'state="{b.state}"',
            f"detected_late={'true' if b.detected_late else 'false'}",
            f"suppressed={'true' if b.suppressed else 'false'}",
            f"detected_at={b.detected_at}i",
        ]
    if b.end_ts is not None:
        fields.append(f"end={b.end_ts}i")
    if b.through_ts is not None:
        fields.append(f"through={b.through_ts}i")
    if (duration := b.duration_min) is not None:
        fields.append(f"duration_min={float(duration)}")
    if b.peak is not None:
        fields.append(f"peak={float(b.peak)}")
    if b.limit_c is not None:
        fields.append(f"limit_c={float(b.limit_c)}")
    return f"{tags} {','.join(fields)} {ts}"


class Emitter:
    """Breach changes to the store, the outbox (``wake`` tells the notifier), the log and
    InfluxDB. ``channels``: the notification channels' names; ``late_after_ms``: a breach
    detected this long after its start is ``detected_late``; ``clock``: wall clock (s);
    ``stopping``: set when the stage stops, which ends the retries."""

    def __init__(
        self,
        store: BreachStore,
        influx: InfluxClient,
        wake: threading.Event,
        channels: list[str],
        late_after_ms: int,
        clock: Callable[[], float],
        stopping: threading.Event,
    ) -> None:
        self.store = store
        self.influx = influx
        self.wake = wake
        self.channels = channels
        self.late_after_ms = late_after_ms
        self.clock = clock
        self.stopping = stopping
        self.transitions: Counter[tuple[str, str]] = Counter()  # (rule, transition) stored

    def emit(self, device: str, probe: str, profile_id: str, events: list[Event]) -> None:
        """Store, count, log and write one probe's changes (probe "" for a device's)."""
        delay = 0.5
        while True:
            try:
                changes = self.store.apply(
                    device,
                    probe,
                    profile_id,
                    events,
                    int(self.clock() * 1000),
                    self.late_after_ms,
                    self.channels,
                )
                break
            except StoreUnavailable as exc:
                log.warning("rules: store unavailable (%s); retrying", exc)
                if self.stopping.wait(delay):
                    log.error("rules: stopping with %d breach changes not stored", len(events))
                    return
                delay = min(delay * 2, MAX_RETRY_DELAY_S)
        for c in changes:
            self.transitions[(c.breach.rule, c.transition)] += 1
            log.log(
                logging.DEBUG if c.transition == "updated" else logging.INFO,  # every batch
                "breach %s: device=%s probe=%s rule=%s start=%d end=%s severity=%s",
                c.transition,
                device,
                probe or "-",
                c.breach.rule,
                c.breach.start_ts,
                c.breach.end_ts,
                c.breach.severity,
            )
        self.wake.set()
        self._write("\n".join(breach_line(device, c) for c in changes).encode())

    def _write(self, lines: bytes) -> None:
        """The store already holds these changes: keep trying until InfluxDB has them too."""
        delay = 0.5
        while True:
            try:
                self.influx.write(lines, "ms")
                return
            except InfluxUnavailable as exc:
                log.warning("rules: InfluxDB unavailable (%s); breach points retried", exc)
            if self.stopping.wait(delay):
                log.error("rules: stopping with breach points not written to InfluxDB")
                return
            delay = min(delay * 2, MAX_RETRY_DELAY_S)
