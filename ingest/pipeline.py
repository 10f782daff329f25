"""The ingest pipeline, declared in one place. For each batch of MQTT messages:

  1. decode   (ingest.decode)  payload -> contract readings, or rejections with a reason
  2. place    (ingest.clock)   give each reading its device time, or hold it durably
  3. ledger   (ingest.ledger)  dedup by (device, seq); open, fill and report seq gaps
  4. encode   (ingest.lines)   readings, gaps and rejections -> line protocol
  5. store    (coldtrace.influx) one write per batch; retried while InfluxDB is down
  6. ack      (ingest.consumer) only after store returned: the PUBACK of each message, and
              to each device the seqs it may now delete (`Work.acks`, contract v1.1)

Stages 1-4 are `prepare`, stage 5 is `store`; ingest.service overlaps the store of one batch
with the preparation of the next and acks a batch only when its store returned. If InfluxDB
refuses a batch outright (HTTP 4xx), the ledger forgets the batch's devices and `recover`
stores each message alone, so one poisoned message is dead-lettered without its neighbours.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, TypeVar

from coldtrace.contract import Reading, device_from_topic
from coldtrace.influx import InfluxClient, InfluxRejected, InfluxUnavailable
from coldtrace.records import PlacedReading
from ingest.clock import BootClocks, BootKey
from ingest.decode import Decoded, Rejection, decode
from ingest.held import HeldReadings
from ingest.history import load_boot_offset, load_device_history
from ingest.ledger import GapChange, Ledger, Verdict
from ingest.lines import gap_line, reading_lines, rejection_line

log = logging.getLogger(__name__)
T = TypeVar("T")


class Stopping(Exception):
    """Shutdown was asked for while waiting on InfluxDB; nothing of the batch is acked."""


class InboundMessage(NamedTuple):  # one per MQTT message: cheap to build (see PlacedReading)
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which MQTT connection delivered it: acks are only valid on that one
    received_ns: int


@dataclass(slots=True)
class Work:
    """What one batch will write; its counts join the totals only once it is stored."""

    lines: list[str]  # readings, ms precision
    ns_lines: list[str]  # rejections and seq gaps: ns precision keeps their points apart
    releases: list[tuple[BootKey, list[int]]]
    counts: Counter[str]
    placed: list[PlacedReading]  # the readings this batch stores for the first time
    # device -> (first, last) seq: what the device may delete once this batch is stored
    # (ledger.DeviceLedger.acked, as of the end of this batch)
    acks: dict[str, tuple[int, int]]


class Pipeline:
    def __init__(
        self,
        influx: InfluxClient,
        held: HeldReadings,
        *,
        max_payload_bytes: int,
        dedup_window_h: int,
        stop: threading.Event,
    ) -> None:
        self.influx = influx
        self.held = held
        self.max_payload_bytes = max_payload_bytes
        self.stop = stop
        self.ledger = Ledger(dedup_window_h)
        self.clocks = BootClocks()
        self.held_keys: set[BootKey] = held.keys()
        self._offset_asked: set[BootKey] = set()
        self.totals: Counter[str] = Counter()
        self.retrying_since: float | None = None

    # -- the batch ---------------------------------------------------------------------------

    def prepare(self, messages: list[InboundMessage]) -> Work:
        """Stages 1-4 for a batch. Stores nothing: hand the result to store()."""
        decoded = [decode(m.topic, m.payload, self.max_payload_bytes) for m in messages]
        return self._build(messages, decoded)

    def store(self, work: Work) -> None:
        """Stage 5: return only when all of the batch is durable (raises InfluxRejected)."""
        self._with_retry(lambda: self.influx.write("\n".join(work.lines).encode(), "ms"))
        self._with_retry(lambda: self.influx.write("\n".join(work.ns_lines).encode(), "ns"))
        for key, seqs in work.releases:
            self.held.release(key, seqs)
        self.totals.update(work.counts)

    def forget(self, batches: list[list[InboundMessage]]) -> None:
        """Drop ledger state of these batches' devices: what was not stored is unknown again."""
        self.ledger.forget(
            {d for batch in batches for m in batch if (d := device_from_topic(m.topic))}
        )

    def recover(self, messages: list[InboundMessage], refused: Work) -> dict[str, tuple[int, int]]:
        """InfluxDB refused a batch: store its messages one by one, dead-lettering the
        ones it refuses, so one poisoned message does not take its neighbours with it.
        Returns the acknowledgements of what was stored (as `Work.acks`)."""
        self.held_keys.update(key for key, _ in refused.releases)
        acks: dict[str, tuple[int, int]] = {}
        for m in messages:
            d = decode(m.topic, m.payload, self.max_payload_bytes)
            try:
                work = self._build([m], [d])
                self.store(work)
                acks.update(work.acks)
            except InfluxRejected as exc:
                self.ledger.forget({d.device})
                count = len(d.readings) + sum(r.readings for r in d.rejections)
                rej = Rejection("storage_rejected", str(exc), count, m.payload, d.device)
                self.store(self._build([m], [Decoded(d.device, rejections=[rej])]))
        return acks

    def _build(self, messages: list[InboundMessage], decoded: list[Decoded]) -> Work:
        self._prime(decoded)
        work = Work([], [], [], Counter(), [], {})
        for m, d in zip(messages, decoded, strict=True):
            work.counts["messages"] += 1
            for i, rej in enumerate(d.rejections):
                self._reject(work, m, rej, i)
            if not d.readings and not d.dropped:
                continue
            placed, held = self.clocks.place(d.device, d.boot, d.readings)
            key = (d.device, d.boot)
            if held:
                # Durable now, before this batch is acked; idempotent if it is redelivered.
                self.held.hold(d.device, d.boot, held)
                self.held_keys.add(key)
                work.counts["held"] += len(held)
            if key in self.held_keys and self.clocks.offset(key) is not None:
                self.held_keys.discard(key)  # store() deletes the rows once they are written
                released = self.held.take(key)
                more, _ = self.clocks.place(d.device, d.boot, released)
                placed.extend(more)
                work.releases.append((key, [r.seq for r in released]))
                work.counts["released"] += len(released)
            self._ledger(work, m, d, placed, held)
        return work

    def _ledger(
        self,
        work: Work,
        m: InboundMessage,
        d: Decoded,
        placed: list[PlacedReading],
        held: list[Reading],
    ) -> None:
        ledger = self.ledger[d.device]
        gaps: list[GapChange] = []
        for dropped in d.dropped:
            ts = placed[0].ts if placed else m.received_ns // 1_000_000
            gaps.extend(ledger.report_dropped(d.device, dropped.first, dropped.last, ts))
        if held:
            gaps.extend(ledger.hold(d.device, [r.seq for r in held], m.received_ns // 1_000_000))
        for p in placed:
            lines: list[str] = []
            fp = reading_lines(p, lines)
            verdict = ledger.check(p.reading.seq, fp)
            if verdict is Verdict.NEW:
                work.lines.extend(lines)
                work.placed.append(p)
                gaps.extend(ledger.record(d.device, p, fp))
                work.counts["stored"] += 1
            elif verdict is Verdict.DUPLICATE:
                work.counts["duplicates"] += 1
            else:
                rej = Rejection(
                    "conflicting_duplicate",
                    f"seq {p.reading.seq} already stored with other values",
                    1,
                    p.reading.model_dump_json().encode(),
                    d.device,
                    p.reading.seq,
                )
                self._reject(work, m, rej, len(work.ns_lines))
        if (acked := ledger.acked()) is not None:
            work.acks[d.device] = acked
        for change in gaps:
            work.ns_lines.append(gap_line(change))
            gap = change.gap
            if gap.source == "ingest" and change.missing == gap.last - gap.first + 1:
                log.warning(
                    "seq gap: device=%s seqs %d..%d missing (%d readings)",
                    change.device,
                    gap.first,
                    gap.last,
                    change.missing,
                )

    def _reject(self, work: Work, m: InboundMessage, rej: Rejection, index: int) -> None:
        log.warning(
            "rejected: reason=%s device=%s topic=%s readings=%d: %s",
            rej.reason,
            rej.device or "?",
            m.topic[:200],
            rej.readings,
            rej.detail[:300],
        )
        # ns precision and a per-batch index keep two rejections from sharing a point.
        work.ns_lines.append(rejection_line(rej, m.topic, m.received_ns + index))
        work.counts["dead_letters"] += 1
        work.counts["rejected"] += rej.readings

    # -- priming from InfluxDB ---------------------------------------------------------------

    def _prime(self, decoded: list[Decoded]) -> None:
        for d in decoded:
            if not d.readings and not d.dropped:
                continue
            if not self.ledger.knows(d.device):
                known = [r.ts for r in d.readings if r.ts is not None]
                since = (min(known) if known else int(time.time() * 1000)) - self.ledger.window_ms
                history = self._with_retry(
                    partial(load_device_history, self.influx, d.device, since)
                )
                self.ledger.prime(d.device, history)
            key = (d.device, d.boot)
            if (
                self.clocks.offset(key) is None
                and key not in self._offset_asked
                and all(r.ts is None for r in d.readings)
            ):
                self._offset_asked.add(key)
                offset = self._with_retry(partial(load_boot_offset, self.influx, *key))
                if offset is not None:
                    self.clocks.learn(key, offset)

    def _with_retry(self, op: Callable[[], T]) -> T:
        delay = 0.2
        while True:
            try:
                result = op()
                self.retrying_since = None
                return result
            except InfluxUnavailable as exc:
                if self.retrying_since is None:
                    self.retrying_since = time.monotonic()
                log.warning(
                    "InfluxDB unavailable (%s); retrying in %.1fs, nothing acked", exc, delay
                )
            if self.stop.wait(delay * random.uniform(0.5, 1.5)):
                raise Stopping
            delay = min(delay * 2, 10.0)
