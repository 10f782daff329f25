"""Stage 3, ledger: what ingest knows of each device's seqs.

Two jobs, both keyed by (device, seq):
- deduplication: a seq seen again with the same fingerprint is an idempotent repeat; with a
  different fingerprint it is a conflict (dead-lettered, the first version stays);
- seq gaps: a jump over seqs opens a gap, a late reading fills it, a device's own report of
  dropped seqs closes it as reported. Every change to a gap is a GapChange to store, so a loss
  between device and ingest (e.g. a broker queue overflow) never passes silently.

The state is a cache of what InfluxDB holds: a device is primed from there on first sight, and
forgotten (to be primed again) whenever a write could not be stored. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from coldtrace.records import PlacedReading

HOUR_MS = 3_600_000
MAX_OPEN_GAPS = 1000  # per device; beyond that the oldest gap is final as reported
FP_MASK = 0xFFFF_FFFF


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(slots=True)
class SeqGap:
    first: int
    last: int
    opened_ts: int  # device time of the reading that revealed the gap: the point's timestamp
    source: str  # "ingest" (detected) or "device" (reported dropped by the device)
    missing: list[list[int]] = field(default_factory=list)  # still-missing [lo, hi] ranges

    @property
    def missing_count(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.missing)


@dataclass(frozen=True, slots=True)
class GapChange:
    device: str
    gap: SeqGap
    missing: int


@dataclass(slots=True)
class DeviceHistory:
    """What InfluxDB says of one device, to prime the ledger."""

    seen: dict[int, tuple[int, int]]  # seq -> (fingerprint, ts)
    high: int | None
    gaps: list[SeqGap]
    low: int | None = None  # the lowest seq ever stored: a later, lower one reveals a gap too


class DeviceLedger:
    def __init__(self, history: DeviceHistory, window_ms: int) -> None:
        # seq -> ts << 32 | fingerprint (a CRC-32): one plain int per reading, not a tuple,
        # so the window's millions of entries give the garbage collector nothing to track.
        self.seen = {seq: ts << 32 | fp for seq, (fp, ts) in history.seen.items()}
        self.high = history.high
        self.low = history.low if history.low is not None else history.high
        self.gaps = list(history.gaps)
        self.window_ms = window_ms
        self.max_ts = max((ts for _, ts in history.seen.values()), default=0)
        self._since_prune = 0

    def check(self, seq: int, fp: int) -> Verdict:
        known = self.seen.get(seq)
        if known is None:
            return Verdict.NEW
        return Verdict.DUPLICATE if known & FP_MASK == fp else Verdict.CONFLICT

    def record(self, device: str, p: PlacedReading, fp: int) -> list[GapChange]:
        seq = p.reading.seq
        self.seen[seq] = p.ts << 32 | fp
        if p.ts > self.max_ts:
            self.max_ts = p.ts
        self._since_prune += 1
        if self._since_prune >= 10_000:
            self._prune()
        return self._account(device, seq, p.ts)

    def hold(self, device: str, seqs: list[int], ts: int) -> list[GapChange]:
        """Readings held for their clock (durable on the server, not yet stored): accounted
        for like stored ones, so the device's acknowledgement covers them and their placing
        later opens no gap. ``ts``: ms, the time of a gap they reveal (the receive time)."""
        changes: list[GapChange] = []
        for seq in seqs:
            changes.extend(self._account(device, seq, ts))
        return changes

    def _account(self, device: str, seq: int, ts: int) -> list[GapChange]:
        if self.high is None or self.low is None:
            self.high = self.low = seq
            return []
        if seq > self.high + 1:
            gap = self._open(ts, self.high + 1, seq - 1)
            self.high = seq
            return [GapChange(device, gap, gap.missing_count)]
        if seq > self.high:
            self.high = seq
            return []
        if seq < self.low - 1:
            # Below everything stored so far (a backlog arriving after newer data): the seqs
            # between it and the lowest stored one were never seen either.
            gap = self._open(ts, seq + 1, self.low - 1)
            self.low = seq
            return [GapChange(device, gap, gap.missing_count)]
        self.low = min(self.low, seq)
        return self._fill(device, seq, seq)

    def _open(self, ts: int, first: int, last: int) -> SeqGap:
        gap = SeqGap(first, last, ts, "ingest", [[first, last]])
        self._add_gap(gap)
        return gap

    def acked(self) -> tuple[int, int] | None:
        """(first, last): every seq in first..last is stored, held, dead-lettered or reported
        dropped by the device; None while nothing is. `last` stops below the first seq still
        missing in an open gap, so a device keeps (and sends again) what ingest never got."""
        if self.high is None or self.low is None:
            return None
        missing = [lo for gap in self.gaps for lo, _ in gap.missing]
        return self.low, min(missing) - 1 if missing else self.high

    def report_dropped(self, device: str, first: int, last: int, ts: int) -> list[GapChange]:
        """The device says it discarded [first, last]: a reported gap, not a loss to hunt."""
        changes = self._fill(device, first, last)
        if self.high is not None and first > self.high + 1:
            lost = SeqGap(self.high + 1, first - 1, ts, "ingest", [[self.high + 1, first - 1]])
            self._add_gap(lost)
            changes.append(GapChange(device, lost, lost.missing_count))
        reported = SeqGap(first, last, ts, "device", [[first, last]])
        if self.high is None or last > self.high:
            self.high = last
        if self.low is None or first < self.low:
            self.low = first
        changes.append(GapChange(device, reported, reported.missing_count))
        return changes

    def _add_gap(self, gap: SeqGap) -> None:
        self.gaps.append(gap)
        if len(self.gaps) > MAX_OPEN_GAPS:
            del self.gaps[0]

    def _fill(self, device: str, lo: int, hi: int) -> list[GapChange]:
        changes: list[GapChange] = []
        for gap in self.gaps:
            if hi < gap.first or lo > gap.last:
                continue
            before = gap.missing_count
            remaining: list[list[int]] = []
            for a, b in gap.missing:
                if b < lo or a > hi:
                    remaining.append([a, b])
                    continue
                if a < lo:
                    remaining.append([a, lo - 1])
                if b > hi:
                    remaining.append([hi + 1, b])
            gap.missing = remaining
            if gap.missing_count != before:
                changes.append(GapChange(device, gap, gap.missing_count))
        self.gaps = [g for g in self.gaps if g.missing]
        return changes

    def _prune(self) -> None:
        self._since_prune = 0
        horizon = self.max_ts - self.window_ms
        self.seen = {s: v for s, v in self.seen.items() if v >> 32 >= horizon}


class Ledger:
    def __init__(self, window_h: int) -> None:
        self.window_ms = window_h * HOUR_MS
        self.devices: dict[str, DeviceLedger] = {}

    def knows(self, device: str) -> bool:
        return device in self.devices

    def prime(self, device: str, history: DeviceHistory) -> None:
        self.devices[device] = DeviceLedger(history, self.window_ms)

    def forget(self, devices: set[str]) -> None:
        for d in devices:
            self.devices.pop(d, None)

    def __getitem__(self, device: str) -> DeviceLedger:
        return self.devices[device]
