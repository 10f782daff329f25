"""The ingest pipeline, declared in one place. For each batch of MQTT messages:

  1. decode   (ingest.decode)  payload -> contract readings, or rejections with a reason
  2. place    (ingest.clock)   give each reading its device time, or hold it durably
  3. ledger   (ingest.ledger)  dedup by (device, seq); open, fill and report seq gaps
  4. encode   (ingest.lines)   readings, gaps and rejections -> line protocol
  5. store    (coldtrace.influx) one write per batch (readings, gaps and dead letters
               together, so no reader sees a reading without its gap); retried while down
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

from coldtrace.contract import MIN_TS_MS, Ack, Reading, device_from_topic
from coldtrace.influx import InfluxClient, InfluxRejected, InfluxUnavailable, quote_string
from coldtrace.records import PlacedReading
from ingest.clock import BootClocks, BootKey
from ingest.decode import Decoded, Rejection, decode
from ingest.held import HeldReadings
from ingest.history import Wanted, load_boot_offset, load_histories
from ingest.ledger import DeviceLedger, GapChange, Ledger, Verdict
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

    lines: list[str]  # readings, ms precision (written as ns: see store)
    ns_lines: list[str]  # rejections and seq gaps: ns precision keeps their points apart
    releases: list[tuple[BootKey, list[int]]]
    counts: Counter[str]
    placed: list[PlacedReading]  # the readings this batch stores for the first time
    # what each device may delete once this batch is stored (ledger.DeviceLedger.acked, as
    # of the end of this batch)
    acks: dict[str, Ack]


class Pipeline:
    def __init__(
        self,
        influx: InfluxClient,
        held: HeldReadings,
        *,
        max_payload_bytes: int,
        dedup_window_h: int,
        stop: threading.Event,
        max_clock_ahead_s: int = 300,
        late_horizon_h: float = 48.0,
    ) -> None:
        self.influx = influx
        self.held = held
        self.max_payload_bytes = max_payload_bytes
        self.max_ahead_ms = max_clock_ahead_s * 1000
        self.late_ms = int(late_horizon_h * 3_600_000)
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
        """Stage 5: return only when all of the batch is durable (raises InfluxRejected).

        One write: a reading and the seq gap it revealed (or filled) become visible together.
        Every reading line ends in its ms timestamp, so joining them with six zeros makes them
        ns lines without touching (or re-fingerprinting) each one."""
        readings = "000000\n".join(work.lines) + "000000\n" if work.lines else ""
        body = (readings + "\n".join(work.ns_lines)).encode()
        self._with_retry(lambda: self.influx.write(body, "ns"))
        for key, seqs in work.releases:
            self.held.release(key, seqs)
        self.totals.update(work.counts)

    def forget(self, batches: list[list[InboundMessage]]) -> None:
        """Drop ledger state of these batches' devices: what was not stored is unknown again."""
        self.ledger.forget(
            {d for batch in batches for m in batch if (d := device_from_topic(m.topic))}
        )

    def recover(self, messages: list[InboundMessage], refused: Work) -> dict[str, Ack]:
        """InfluxDB refused a batch: store its messages one by one, dead-lettering the
        ones it refuses, so one poisoned message does not take its neighbours with it.
        Returns the acknowledgements of what was stored (as `Work.acks`)."""
        self.held_keys.update(key for key, _ in refused.releases)
        acks: dict[str, Ack] = {}
        for m in messages:
            d = decode(m.topic, m.payload, self.max_payload_bytes)
            try:
                work = self._build([m], [d])
                self.store(work)
                acks.update(work.acks)
            except InfluxRejected as exc:
                self.ledger.forget({d.device})
                count = len(d.readings) + sum(r.readings for r in d.rejections)
                seqs = tuple(r.seq for r in d.readings) + tuple(
                    s for r in d.rejections for s in r.all_seqs
                )
                rej = Rejection("storage_rejected", str(exc), count, m.payload, d.device, seqs=seqs)
                self.store(self._build([m], [Decoded(d.device, rejections=[rej])]))
        return acks

    def _build(self, messages: list[InboundMessage], decoded: list[Decoded]) -> Work:
        self._prime(decoded)
        work = Work([], [], [], Counter(), [], {})
        for m, d in zip(messages, decoded, strict=True):
            work.counts["messages"] += 1
            rejections = list(d.rejections)
            copies: list[Rejection] = []
            placed: list[PlacedReading] = []
            held: list[Reading] = []
            if d.readings or d.dropped:
                placed, held = self.clocks.place(d.device, d.boot, d.readings)
                key = (d.device, d.boot)
                if held:
                    # Durable now, before this batch is acked; idempotent if it is redelivered.
                    # A conflicting copy of a held reading: the held one is the seq's reading
                    # (it is stored once the clock is known), the copy adds nothing to the books.
                    for r in self.held.hold(d.device, d.boot, held):
                        copies.append(
                            Rejection(
                                "conflicting_held_duplicate",
                                f"seq {r.seq} already held (clock unknown) with other values",
                                1,
                                r.model_dump_json().encode(),
                                d.device,
                                r.seq,
                            )
                        )
                    self.held_keys.add(key)
                    work.counts["held"] += len(held)
                if key in self.held_keys and self.clocks.offset(key) is not None:
                    self.held_keys.discard(key)  # store() deletes the rows once they are written
                    released = self.held.take(key)
                    more, _ = self.clocks.place(d.device, d.boot, released)
                    placed.extend(more)
                    # In seq order, so the released readings fill the books from below
                    # instead of opening a gap under the reading that set the clock.
                    placed.sort(key=lambda p: p.reading.seq)
                    work.releases.append((key, [r.seq for r in released]))
                    work.counts["released"] += len(released)
            # How many readings each dead letter adds to the books' rejected: those with no
            # valid seq, and the seqs new to the books (not copies of stored or refused ones).
            counted = [r.readings - len(r.all_seqs) for r in rejections]
            ledger = self.ledger.devices.get(d.device)
            if ledger is None:  # no device to keep books for (a bad topic)
                counted = [r.readings for r in rejections]
            else:
                # The refusals' points are indexed after the decode ones' and the copies'.
                first_index = len(rejections) + len(copies)
                self._ledger(work, m, d, ledger, placed, held, rejections, counted, first_index)
            for i, rej in enumerate(rejections + copies):
                self._reject(work, m, rej, i, counted[i] if i < len(counted) else 0)
        # Once per device and batch, as of the batch's end: each message's would be overwritten.
        for device in dict.fromkeys(d.device for d in decoded):
            ledger = self.ledger.devices.get(device)
            if ledger is not None and (acked := ledger.acked()) is not None:
                work.acks[device] = acked
        return work

    def _ledger(
        self,
        work: Work,
        m: InboundMessage,
        d: Decoded,
        ledger: DeviceLedger,
        placed: list[PlacedReading],
        held: list[Reading],
        rejections: list[Rejection],
        counted: list[int],
        first_index: int,
    ) -> None:
        received_ms = m.received_ns // 1_000_000
        hint_ts = placed[0].ts if placed else received_ms
        gaps: list[GapChange] = []
        for dropped in d.dropped:
            gaps.extend(ledger.report_dropped(d.device, dropped.first, dropped.last, hint_ts))
        if held:
            gaps.extend(ledger.hold(d.device, [r.seq for r in held], received_ms))

        def refuse_seq(seq: int, ts: int) -> int:
            new, changes = ledger.record_rejected(d.device, seq, ts)
            gaps.extend(changes)
            return int(new)

        # Dead-lettered seqs take their place in the books in seq order with the readings.
        refused = sorted((s, i) for i, rej in enumerate(rejections) for s in rej.all_seqs)
        j = 0
        ahead = received_ms + self.max_ahead_ms
        late_before = received_ms - self.late_ms
        # Bound once: this loop runs for every reading ingest receives.
        check, record, out, out_placed = ledger.check, ledger.record, work.lines, work.placed
        stored = 0
        for p in placed:
            seq = p.reading.seq
            while j < len(refused) and refused[j][0] < seq:
                counted[refused[j][1]] += refuse_seq(refused[j][0], hint_ts)
                j += 1
            if p.ts > ahead or p.ts < MIN_TS_MS:
                where = "ahead of" if p.ts > ahead else "before 2020, far behind"
                kind = "derived from up" if p.derived else "device"
                detail = (
                    f"seq {seq}: {kind} time {p.ts} ms is {where} the receive time "
                    f"{received_ms} ms (+{self.max_ahead_ms} ms allowed)"
                )
                reason = "clock_ahead" if p.ts > ahead else "clock_behind"
                self._refuse(work, m, p, reason, detail, refuse_seq(seq, p.ts), first_index)
                continue
            lines: list[str] = []
            fp = reading_lines(p, lines)
            verdict = check(seq, fp, p.ts)
            if verdict is Verdict.UNKNOWN:
                verdict = self._ask(d.device, ledger, seq, fp, p.ts)
            if verdict is Verdict.NEW:
                if p.ts < late_before:
                    # Accepted, flagged: older than the late-data horizon when received.
                    lines[-1] = lines[-1].replace(",fp=", ",late=true,fp=", 1)
                    work.counts["late"] += 1
                out.extend(lines)
                out_placed.append(p)
                if changes := record(d.device, p, fp):
                    gaps.extend(changes)
                stored += 1
            elif verdict is Verdict.DUPLICATE:
                work.counts["duplicates"] += 1
            elif verdict is Verdict.CONFLICT:
                detail = f"seq {seq} already stored with other values"
                self._refuse(work, m, p, "conflicting_duplicate", detail, 0, first_index)
            elif verdict is Verdict.REFUSED_BEFORE:
                detail = f"seq {seq} was dead-lettered before: its first fate stands"
                self._refuse(work, m, p, "seq_dead_lettered", detail, 0, first_index)
            else:
                detail = f"seq {seq}: another seq's reading is stored at device time {p.ts} ms"
                self._refuse(work, m, p, "time_taken", detail, refuse_seq(seq, p.ts), first_index)
        for seq, i in refused[j:]:
            counted[i] += refuse_seq(seq, hint_ts)
        work.counts["stored"] += stored
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

    def _refuse(
        self,
        work: Work,
        m: InboundMessage,
        p: PlacedReading,
        reason: str,
        detail: str,
        counted: int,
        first_index: int,
    ) -> None:
        """Dead-letter one placed reading; the stored value (if any) is never replaced."""
        rej = Rejection(
            reason, detail, 1, p.reading.model_dump_json().encode(), p.device, p.reading.seq
        )
        self._reject(work, m, rej, first_index + len(work.ns_lines), counted)

    def _ask(self, device: str, ledger: DeviceLedger, seq: int, fp: int, ts: int) -> Verdict:
        """Beyond the ledger's memory: what InfluxDB holds at this seq or this device time.

        A time below the window loads the window below it at once (one query, not one per
        reading: a backlog older than what the ledger holds arrives in batches); a seq the
        window forgot is asked for alone (a rare old replay)."""
        dev = quote_string(device)
        queries = [f"seq = {seq}"]
        if ts < ledger.horizon:
            since = ts - ledger.window_ms
            queries = [f"time >= {since}ms AND time < {ledger.horizon}ms", *queries]
            ledger.horizon = since
        for where in queries:
            query = f"SELECT seq, fp FROM device_health WHERE device = {dev} AND {where}"
            for row in self._with_retry(partial(self.influx.rows, query)):
                ledger.learn(int(row["seq"]), int(row["fp"]), int(row["time"]))
        verdict = ledger.check(seq, fp, ts)
        return Verdict.NEW if verdict is Verdict.UNKNOWN else verdict

    def _reject(
        self, work: Work, m: InboundMessage, rej: Rejection, index: int, counted: int
    ) -> None:
        log.warning(
            "rejected: reason=%s device=%s topic=%s readings=%d: %s",
            rej.reason,
            rej.device or "?",
            m.topic[:200],
            rej.readings,
            rej.detail[:300],
        )
        # ns precision and a per-batch index keep two rejections from sharing a point.
        work.ns_lines.append(rejection_line(rej, m.topic, m.received_ns + index, counted))
        work.counts["dead_letters"] += 1
        work.counts["rejected"] += rej.readings
        work.counts["books_rejected"] += counted

    # -- priming from InfluxDB ---------------------------------------------------------------

    def _prime(self, decoded: list[Decoded]) -> None:
        """Prime the ledger of every device of the batch it does not know yet, all together
        (history.load_histories: after a restart the fleet's first batches come together),
        and learn the clock of a boot whose readings carry no time from what is stored."""
        accounted = [
            d for d in decoded if d.readings or d.dropped or any(r.all_seqs for r in d.rejections)
        ]
        since: dict[str, int] = {}
        for d in accounted:
            if not self.ledger.knows(d.device) and d.device not in since:
                # From the device's first message in the batch: a later one reaching below
                # the window loads its own (_ask).
                known = [r.ts for r in d.readings if r.ts is not None]
                start = min(known) if known else int(time.time() * 1000)
                since[d.device] = start - self.ledger.window_ms
        if since:
            held = self.held.seqs_of(since)
            wanted = {device: Wanted(s, held[device]) for device, s in since.items()}
            histories = self._with_retry(partial(load_histories, self.influx, wanted))
            for device, history in histories.items():
                self.ledger.prime(device, history)
        for d in accounted:
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
