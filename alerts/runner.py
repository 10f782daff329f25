"""The runner of the rules stage: its own thread, fed through a bounded queue so that ingest
never waits for the rules.

``observe`` never blocks: when the queue is full the batch's span of device time is only
remembered per device (the overflow), and that span is judged again from what InfluxDB holds.
The thread first watches the devices known before the start, then judges each batch, the
overflow, and ticks every second (silence, retiring idle engines). InfluxDB or the store
away: the batch is queued again and retried a second later (engines ignore repeats); any
other error loses that batch's judging, is logged and counted, and the thread goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import Protocol

from alerts.containment import Containment
from alerts.rules import Sample
from alerts.store import StoreUnavailable
from coldtrace.influx import InfluxUnavailable
from coldtrace.records import PlacedReading

log = logging.getLogger(__name__)
Span = tuple[int, int]  # device ms, both included
TICK_S = 1.0


class Work(Protocol):
    """What the runner's thread does (alerts/stage.RulesStage)."""

    def watch_known_devices(self) -> None: ...

    def evaluate(self, placed: list[PlacedReading]) -> None: ...

    def stored(self, spans: Mapping[str, Span]) -> dict[str, dict[str, list[Sample]]]: ...

    def judge_stored(self, device: str, samples: dict[str, list[Sample]], newest: int) -> None: ...

    def every_second(self) -> None: ...


class Runner:
    """``batches``: the queue's bound, in batches; ``stopping`` ends the thread (and the
    retries of whoever shares it)."""

    def __init__(
        self, work: Work, containment: Containment, batches: int, stopping: threading.Event
    ) -> None:
        self.work = work
        self.containment = containment
        self.queue: queue.Queue[list[PlacedReading]] = queue.Queue(batches)
        self.overflow: dict[str, Span] = {}
        self.lock = threading.Lock()
        self.stopping = stopping
        self.thread = threading.Thread(target=self._run, name="alerts-rules", daemon=True)

    # -- ingest's side: never blocks -------------------------------------------------------

    def observe(self, placed: list[PlacedReading]) -> None:
        if not placed:
            return
        try:
            self.queue.put_nowait(placed)
        except queue.Full:
            self.reread(placed)

    def reread(self, placed: list[PlacedReading]) -> None:
        """Judge what InfluxDB holds of these readings' span, not the readings themselves:
        for readings that overflowed the queue, or that may not all have been stored (a
        refused batch that ingest stored message by message, dead-lettering some)."""
        for p in placed:
            self._remember(p.device, p.ts, p.ts)

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.work.watch_known_devices()
                break
            except InfluxUnavailable as exc:
                log.warning("rules: InfluxDB unavailable (%s); retrying", exc)
                self.stopping.wait(1.0)
            except Exception as exc:
                log.exception("rules: devices known before the start not watched for silence")
                self.containment.failed("start", f"{type(exc).__name__}: {exc}")
                break
        last_tick = 0.0
        while not self.stopping.is_set():
            try:
                batch = self.queue.get(timeout=0.5)
            except queue.Empty:
                batch = None
            try:
                if batch is not None:
                    self.work.evaluate(batch)
                self._reread_overflow()
                if time.monotonic() - last_tick >= TICK_S:
                    last_tick = time.monotonic()
                    self.work.every_second()
                self.containment.cleared("outage")  # whatever waited for it is judged now
                if batch is not None:
                    self.containment.cleared("batch")
            except (InfluxUnavailable, StoreUnavailable) as exc:
                what = "InfluxDB" if isinstance(exc, InfluxUnavailable) else "store"
                log.warning("rules: %s unavailable (%s); retrying", what, exc)
                self.containment.failed("outage", f"{what} unavailable: {exc}")
                if batch is not None:  # judged again whole: engines ignore repeats
                    self.observe(batch)
                self.stopping.wait(1.0)
            except Exception as exc:
                log.exception("rules stage: batch failed; continuing")
                self.containment.failed("batch", f"{type(exc).__name__}: {exc}")

    def _reread_overflow(self) -> None:
        with self.lock:
            spans, self.overflow = self.overflow, {}
        if not spans:
            return
        try:
            stored = self.work.stored(spans)  # every device's span together: a few queries
        except InfluxUnavailable:
            for device, (lo, hi) in spans.items():  # kept for the retry
                self._remember(device, lo, hi)
            raise
        for device, (_, hi) in spans.items():
            self.work.judge_stored(device, stored[device], hi)

    def _remember(self, device: str, lo: int, hi: int) -> None:
        with self.lock:
            a, b = self.overflow.get(device, (lo, hi))
            self.overflow[device] = (min(a, lo), max(b, hi))
