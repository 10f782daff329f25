"""A device's books, read back from InfluxDB and the holding area: every seq the device sent is
stored, held, rejected (dead-lettered) or missing, each in exactly one, so
sent = stored + held + rejected + missing.

- stored: seqs with a reading point (`device_health`); a seq is never stored twice.
- held: seqs held for their clock (ingest/held.py, not yet stored): none is missing, and each
  leaves the held ones when its boot's clock is known (stored or dead-lettered).
- rejected: seqs only dead-lettered (a refused copy of a stored seq is not one: the device's
  reading is stored; those copies are counted apart), plus dead-lettered readings that carried
  no valid seq (each counts one).
- missing: seqs between the device's first and last known seq that are neither; `dropped`
  says how many of them the device itself reported discarding.

The books are recomputed from the facts (seq sets), and `agrees` checks them against what
ingest wrote as it went (the gap points' `missing`, the dead letters' `counted`): a
disagreement is a bookkeeping bug, never a rounding. Pure apart from load_books().
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass

from coldtrace.influx import InfluxClient, quote_string
from ingest.decode import valid_seq
from ingest.lines import parse_seq_ranges


@dataclass(frozen=True, slots=True)
class DeadLetter:
    seqs: tuple[int, ...]  # the valid seqs it accounts for
    readings: int  # the readings it holds, with or without a valid seq
    counted: int  # what ingest added to the books' rejected when it wrote it


@dataclass(frozen=True, slots=True)
class GapPoint:
    first: int
    last: int
    missing: int  # its latest value
    source: str  # "ingest" or "device"


@dataclass(frozen=True, slots=True)
class Books:
    """One device's books (counts of readings; seqs inclusive)."""

    device: str
    sent: int
    stored: int
    held: int  # held for their clock (ingest/held.py), not yet stored
    rejected: int
    missing: int
    dropped: int  # of missing: reported discarded by the device itself
    copies: int  # refused copies of a seq already stored, held or dead-lettered (not in sent)
    first_seq: int | None
    last_seq: int | None
    agrees: bool | None  # the gap points and dead letters say the same (None: a time range)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct seqs as inclusive runs."""
    runs: list[tuple[int, int]] = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], s)
        elif not runs or s > runs[-1][1]:
            runs.append((s, s))
    return runs


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """How many seqs two lists of inclusive runs share (each list disjoint within itself)."""
    return sum(max(0, min(hi, bh) - max(lo, bl) + 1) for lo, hi in a for bl, bh in b)


def compute(
    device: str,
    stored: list[int],
    dead_letters: list[DeadLetter],
    gaps: list[GapPoint],
    *,
    held: AbstractSet[int] = frozenset(),
    ranged: bool = False,
) -> Books:
    """The books from the facts. With `ranged`, `stored` is a time range's seqs: the books
    cover the seqs between its first and last (nothing else bounds a range of seqs). A seq
    both stored and held (between its write and the holding area's delete) is stored."""
    stored_set = set(stored)
    held_set = set(held) - stored_set
    refused: set[int] = set()
    seqless = copies = counted = 0
    for letter in dead_letters:
        seqless += max(0, letter.readings - len(letter.seqs))
        counted += letter.counted
        for s in letter.seqs:
            # A held seq's dead letter is its conflicting copy (the held reading stays).
            if s in stored_set or s in refused or s in held_set:
                copies += 1
            else:
                refused.add(s)
    if ranged:
        bounds = list(stored_set)
    else:
        bounds = [
            *stored_set,
            *held_set,
            *refused,
            *(n for g in gaps for n in (g.first, g.last)),
        ]
    if not bounds:
        agrees = None if ranged else counted == seqless and not any(g.missing for g in gaps)
        return Books(device, seqless, 0, 0, seqless, 0, 0, copies, None, None, agrees)
    lo, hi = min(bounds), max(bounds)
    refused = {s for s in refused if lo <= s <= hi}
    held_set = {s for s in held_set if lo <= s <= hi}
    accounted = _ranges(sorted(s for s in stored_set | held_set | refused if lo <= s <= hi))
    missing_runs: list[tuple[int, int]] = []
    cursor = lo
    for a, b in accounted:
        if a > cursor:
            missing_runs.append((cursor, a - 1))
        cursor = b + 1
    if cursor <= hi:
        missing_runs.append((cursor, hi))
    missing = sum(b - a + 1 for a, b in missing_runs)
    reported = _ranges(
        sorted({s for g in gaps if g.source == "device" for s in range(g.first, g.last + 1)})
    )
    dropped = _overlap(missing_runs, reported)
    rejected = len(refused) + seqless
    stored_n = len(stored_set)
    agrees = None
    if not ranged:
        agrees = sum(g.missing for g in gaps) == missing and counted == rejected
    return Books(
        device,
        stored_n + len(held_set) + rejected + missing,
        stored_n,
        len(held_set),
        rejected,
        missing,
        dropped,
        copies,
        lo,
        hi,
        agrees,
    )


def load_books(
    influx: InfluxClient,
    device: str,
    since_ms: int | None = None,
    until_ms: int | None = None,
    *,
    held: AbstractSet[int] = frozenset(),
) -> Books:
    """A device's books from InfluxDB, over its whole life or the readings whose device time
    lies in [since_ms, until_ms) (dead letters without a seq: received in that range).
    `held`: the device's seqs held for their clock (ingest/held.py held_seqs); over a range,
    those between its first and last stored seq count."""
    dev = quote_string(device)
    when = ""
    if since_ms is not None:
        when += f" AND time >= {int(since_ms)}ms"
    if until_ms is not None:
        when += f" AND time < {int(until_ms)}ms"
    stored = [
        int(r["seq"])
        for r in influx.rows(f"SELECT seq FROM device_health WHERE device = {dev}{when}")
    ]
    letters = []
    for r in influx.rows(f"SELECT seq, seqs, readings, counted FROM rejected WHERE device = {dev}"):
        seq = valid_seq(r.get("seq"))
        seqs = (seq,) if seq is not None else tuple(parse_seq_ranges(str(r.get("seqs") or "")))
        letters.append(DeadLetter(seqs, int(r.get("readings") or 0), int(r.get("counted") or 0)))
    if when:
        # Seq-less dead letters have no device time: those received in the range count.
        letters = [x for x in letters if x.seqs] + [
            DeadLetter((), int(r.get("readings") or 0), 0)
            for r in influx.rows(
                f"SELECT seq, seqs, readings FROM rejected WHERE device = {dev}{when}"
            )
            if r.get("seq") is None and not r.get("seqs")
        ]
    gaps = [
        GapPoint(int(r["first"]), int(r["last"]), int(r["missing"]), str(r["source"]))
        for r in influx.rows(
            f"SELECT first, last, missing, source FROM seq_gap WHERE device = {dev}"
        )
    ]
    return compute(device, stored, letters, gaps, held=held, ranged=bool(when))
