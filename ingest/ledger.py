"""Stage 3, ledger: what ingest knows of each device's seqs.

Two jobs, both keyed by (device, seq):
- deduplication: a seq seen again with the same fingerprint is an idempotent repeat; with a
  different fingerprint it is a conflict (dead-lettered, the first version stays), and so is
  another seq at a device time already holding a reading (InfluxDB would overwrite it); what
  lies beyond the window is UNKNOWN and the pipeline asks InfluxDB before writing;
- seq gaps: a jump over seqs opens a gap, a late or dead-lettered reading fills it, a
  device's own report of dropped seqs closes it as reported. Every change to a gap is a
  GapChange to store, so a loss between device and ingest (e.g. a broker queue overflow)
  never passes silently.

The state is a cache of what InfluxDB holds: a device is primed from there on first sight, and
forgotten (to be primed again) whenever a write could not be stored. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from coldtrace.contract import Ack
from coldtrace.records import PlacedReading

HOUR_MS = 3_600_000
MAX_OPEN_GAPS = 1000  # per device; beyond that the oldest gap is final as reported
FP_MASK = 0xFFFF_FFFF
PRUNE_EVERY = 10_000  # readings between prunes of the window, at least


def subtract(ranges: list[list[int]], lo: int, hi: int) -> list[list[int]]:
    """[lo, hi] taken out of sorted, disjoint [a, b] ranges."""
    out: list[list[int]] = []
    for a, b in ranges:
        if b < lo or a > hi:
            out.append([a, b])
            continue
        if a < lo:
            out.append([a, lo - 1])
        if b > hi:
            out.append([hi + 1, b])
    return out


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"  # the seq is stored with other values
    TIME_TAKEN = "time_taken"  # another seq is stored at this (device, time)
    REFUSED_BEFORE = "refused_before"  # the seq was dead-lettered: its first fate stands
    UNKNOWN = "unknown"  # beyond the ledger's memory: ask InfluxDB, then learn()


@dataclass(slots=True)
class SeqGap:
    first: int
    last: int
    opened_ts: int  # device time of the reading that revealed it (or of the report): its time
    source: str  # "ingest" (detected) or "device" (reported dropped by the device)
    missing: list[list[int]] = field(default_factory=list)  # still-missing [lo, hi] ranges

    @property
    def missing_count(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.missing)


def _key(gap: SeqGap) -> tuple[int, int]:
    """The order of a device report's point (lines.gap_line): its ms time, then first seq."""
    return gap.opened_ts, gap.first


@dataclass(frozen=True, slots=True)
class GapChange:
    device: str
    gap: SeqGap
    missing: int


@dataclass(slots=True)
class DeviceHistory:
    """What InfluxDB says of one device, to prime the ledger."""

    seen: dict[int, tuple[int, int]]  # seq -> (fingerprint, ts)
    high: int | None  # the highest seq stored, dead-lettered or reported dropped
    gaps: list[SeqGap]  # open gaps, both sources, with what is still missing
    low: int | None = None  # the lowest such seq: a later, lower one reveals a gap too
    rejected: set[int] = field(default_factory=set)  # seqs dead-lettered (not stored)
    reported: set[tuple[int, int]] = field(default_factory=set)  # dropped ranges reported
    since: int | None = None  # device time (ms) from which `seen` is complete
    held: set[int] = field(default_factory=set)  # seqs held for their clock, none stored


class DeviceLedger:
    """One device's books in memory. Every seq between low and high is stored, dead-lettered
    (rejected) or missing in exactly one gap; a seq stored later leaves its gap."""

    def __init__(self, history: DeviceHistory, window_ms: int) -> None:
        # seq -> ts << 32 | fingerprint (a CRC-32): one plain int per reading, not a tuple,
        # so the window's millions of entries give the garbage collector nothing to track.
        self.seen = {seq: ts << 32 | fp for seq, (fp, ts) in history.seen.items()}
        self.times = {ts for _, ts in history.seen.values()}  # device times holding a reading
        self.high = history.high
        self.low = history.low if history.low is not None else history.high
        self.gaps = list(history.gaps)
        self.rejected = set(history.rejected)
        self.held = set(history.held)  # seqs held for their clock (see hold)
        self.reported = set(history.reported)
        self.window_ms = window_ms
        self.max_ts = max((ts for _, ts in history.seen.values()), default=0)
        # Below this device time `seen` and `times` are incomplete (not loaded, or pruned).
        self.horizon = self.max_ts - window_ms if history.since is None else history.since
        if not history.seen and history.high is None:
            self.horizon = -1  # nothing stored yet: nothing forgotten either
        self._since_prune = 0
        self._prune_every = PRUNE_EVERY

    def check(self, seq: int, fp: int, ts: int) -> Verdict:
        known = self.seen.get(seq)
        if known is not None:
            return Verdict.DUPLICATE if known & FP_MASK == fp else Verdict.CONFLICT
        if seq in self.rejected:
            return Verdict.REFUSED_BEFORE
        if ts in self.times:
            return Verdict.TIME_TAKEN
        if ts < self.horizon:
            return Verdict.UNKNOWN
        high = self.high
        # Above the books (the common case: the next seq) nothing can have been forgotten.
        if high is not None and seq <= high and self._forgotten(seq):
            return Verdict.UNKNOWN
        return Verdict.NEW

    def _forgotten(self, seq: int) -> bool:
        """A seq inside the books that is neither in memory, dead-lettered nor missing: it
        was stored before the window (or its gap was evicted), so only InfluxDB can tell."""
        if self.high is None or self.low is None or not self.low <= seq <= self.high:
            return False
        if seq in self.rejected or seq in self.held:
            return False
        return not any(lo <= seq <= hi for g in self.gaps for lo, hi in g.missing)

    def learn(self, seq: int, fp: int, ts: int) -> None:
        """A reading InfluxDB holds beyond the window (asked after Verdict.UNKNOWN)."""
        self.seen[seq] = ts << 32 | fp
        self.times.add(ts)

    def record(self, device: str, p: PlacedReading, fp: int) -> list[GapChange]:
        seq = p.reading.seq
        self.seen[seq] = p.ts << 32 | fp
        self.times.add(p.ts)
        self.held.discard(seq)
        if p.ts > self.max_ts:
            self.max_ts = p.ts
        self._since_prune += 1
        if self._since_prune >= self._prune_every:
            self._prune()
        if self.high is not None and seq == self.high + 1:
            self.high = seq  # the next seq (the common case): no gap opens or fills
            return []
        return self._account(device, seq, p.ts)

    def hold(self, device: str, seqs: list[int], ts: int) -> list[GapChange]:
        """Readings held for their clock (durable on the server, not yet stored): accounted
        for like stored ones, so the device's acknowledgement covers them and their placing
        later opens no gap. ``ts``: ms, the time of a gap they reveal (the receive time)."""
        changes: list[GapChange] = []
        for seq in seqs:
            self.held.add(seq)
            changes.extend(self._account(device, seq, ts))
        return changes

    def record_rejected(self, device: str, seq: int, ts: int) -> tuple[bool, list[GapChange]]:
        """A dead-lettered seq: (new to the books?, gap changes). It is not missing (it fills
        its gap); a seq already stored or dead-lettered stays where it is (a refused copy)."""
        if seq in self.seen or seq in self.rejected or self._forgotten(seq):
            return False, []
        self.rejected.add(seq)
        return True, self._account(device, seq, ts)

    def _account(self, device: str, seq: int, ts: int) -> list[GapChange]:
        """seq is now stored or dead-lettered: extend the books to it, opening a gap over any
        seqs jumped, or take it out of the gap it was missing in."""
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
            # Below everything seen so far (a backlog arriving after newer data): the seqs
            # between it and the lowest seen one were never seen either.
            gap = self._open(ts, seq + 1, self.low - 1)
            self.low = seq
            return [GapChange(device, gap, gap.missing_count)]
        self.low = min(self.low, seq)
        changes, _ = self._fill(device, seq, seq)
        return changes

    def _open(self, ts: int, first: int, last: int) -> SeqGap:
        gap = SeqGap(first, last, ts, "ingest", [[first, last]])
        self._add_gap(gap)
        return gap

    def acked(self) -> Ack | None:
        """What the device may delete (contract v1.1): every seq from `first` to `seq` is
        stored, held, dead-lettered or reported dropped; None while nothing is. `seq` stops
        below the first seq still missing in an open gap ingest detected, so a device keeps
        (and sends again) what ingest never got; what the device reported dropped it no longer
        has to send. `high` is the highest seq known."""
        if self.high is None or self.low is None:
            return None
        missing = [lo for gap in self.gaps if gap.source == "ingest" for lo, _ in gap.missing]
        last = min(missing) - 1 if missing else self.high
        return Ack.model_validate({"from": self.low, "seq": last, "high": self.high})

    def report_dropped(self, device: str, first: int, last: int, ts: int) -> list[GapChange]:
        """The device says it discarded [first, last]: a reported gap, not a loss to hunt.

        Reconciled against the books: seqs of the range that are stored or dead-lettered are
        not missing, seqs an open gap held move to the reported one (each seq missing in one
        gap only), and a report seen before (a replayed message) changes nothing. Of two
        reports that overlap, the one with the later point (``ts``, then ``first``: the order
        history.load_histories reloads them in) holds the seqs both miss, whichever came
        first: the gap points then say the same after a restart."""
        if (first, last) in self.reported:
            return []
        self.reported.add((first, last))
        changes, moved = self._fill(device, first, last, report=(ts, first))
        missing = moved
        if self.high is None or self.low is None:
            missing = [[first, last]]
        else:
            if first > self.high + 1:
                lost = self._open(ts, self.high + 1, first - 1)
                changes.append(GapChange(device, lost, lost.missing_count))
            elif last < self.low - 1:
                lost = self._open(ts, last + 1, self.low - 1)
                changes.append(GapChange(device, lost, lost.missing_count))
            if last > self.high:
                missing.append([max(first, self.high + 1), last])
            if first < self.low:
                missing.append([first, min(last, self.low - 1)])
        self.high = last if self.high is None else max(self.high, last)
        self.low = first if self.low is None else min(self.low, first)
        reported = SeqGap(first, last, ts, "device", sorted(missing))
        if reported.missing:
            self._add_gap(reported)
            changes.append(GapChange(device, reported, reported.missing_count))
        return changes

    def _add_gap(self, gap: SeqGap) -> None:
        self.gaps.append(gap)
        if len(self.gaps) > MAX_OPEN_GAPS:
            del self.gaps[0]

    def _fill(
        self, device: str, lo: int, hi: int, report: tuple[int, int] | None = None
    ) -> tuple[list[GapChange], list[list[int]]]:
        """Take [lo, hi] out of every open gap: the changes, and the ranges taken out. For a
        `report` (its point's ms time and first seq), a later device report keeps its seqs."""
        changes: list[GapChange] = []
        taken: list[list[int]] = []
        for gap in self.gaps:
            if hi < gap.first or lo > gap.last:
                continue
            if report is not None and gap.source == "device" and _key(gap) > report:
                continue
            before = gap.missing_count
            taken.extend([max(a, lo), min(b, hi)] for a, b in gap.missing if a <= hi and b >= lo)
            gap.missing = subtract(gap.missing, lo, hi)
            if gap.missing_count != before:
                changes.append(GapChange(device, gap, gap.missing_count))
        self.gaps = [g for g in self.gaps if g.missing]
        return changes, taken

    def _prune(self) -> None:
        self._since_prune = 0
        horizon = self.horizon = max(self.horizon, self.max_ts - self.window_ms)
        self.seen = {s: v for s, v in self.seen.items() if v >> 32 >= horizon}
        self.times = {t for t in self.times if t >= horizon}
        # A prune copies the whole window: every quarter of the window's size, not every
        # 10,000 readings, so a 48 h window of one reading a second (172,800) costs 4 copies
        # per reading instead of 17, and memory stays under 1.25 windows.
        self._prune_every = max(PRUNE_EVERY, len(self.seen) // 4)


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
