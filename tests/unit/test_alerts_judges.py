"""The judge registry (alerts/judges.py) driven with timestamped samples: no thread, no
InfluxDB, no store. Which profile a probe's stretch of time has is a plain function here, as
the entry point gives it (coldtrace.deliveries.attach.profile_piece_at); the readings an engine is
rebuilt from are those the test "stored" before judging them, as ingest stores a batch
before the stage sees it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping

from alerts.judges import JudgeRegistry, Piece
from alerts.readings import DOOR
from alerts.rules import BreachChange, Event, Sample
from coldtrace.breaches import Breach
from coldtrace.profiles import Profile, load_profiles
from coldtrace.records import FAR_FUTURE_MS

MINUTE = 60_000
T0 = 1_784_007_600_000  # 2026-07-14T05:40:00Z
PROFILES = load_profiles()


class Stored:
    """The readings "in InfluxDB": per (device, probe)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        self.reads: list[str] = []  # the devices whose samples were read, one entry a read

    def samples(
        self, device: str, since: int, until: int | None = None, probe: str | None = None
    ) -> dict[str, list[Sample]]:
        self.reads.append(device)
        last = FAR_FUTURE_MS if until is None else until
        return {
            p: [s for s in rows if since <= s.ts <= last]
            for (d, p), rows in self.rows.items()
            if d == device and (probe is None or p == probe)
        }

    def samples_of_devices(self, since: Mapping[str, int]) -> dict[str, dict[str, list[Sample]]]:
        self.reads.append(",".join(sorted(since)))
        return {
            d: {p: [s for s in rows if s.ts >= lo] for (e, p), rows in self.rows.items() if e == d}
            for d, lo in since.items()
        }

    def heard_since(self, device: str, probe: str, since: int) -> bool:
        return any(s.ts >= since for s in self.rows[(device, probe)])


class Harness:
    """A registry whose probe ``product`` has the stretches ``pieces``; what it emits is
    kept as (probe, profile, change, rule, start, end)."""

    def __init__(self, pieces: list[Piece], settings_profile: Profile | None = None) -> None:
        self.pieces = pieces
        self.stored = Stored()
        self.emitted: list[tuple[str, str, str, str, int, int | None]] = []
        self.asked: list[list[str]] = []  # the devices whose stored breaches were asked for
        self.lookups: list[list[tuple[str, str, int]]] = []  # the stretches asked for, a call each
        self.now_ms = T0 + 120 * MINUTE
        self.registry = JudgeRegistry(
            PROFILES,
            lambda device: settings_profile,
            lambda device, probe, ts: self.pieces_at([(device, probe, ts)])[0],
            self.pieces_at,
            self.known,
            self.stored,
            self.emit,
            horizon_ms=60 * MINUTE,
            clock=lambda: self.now_ms / 1000,
        )

    def known(self, devices: Collection[str]) -> dict[str, list[Breach]]:
        self.asked.append(sorted(devices))
        return {d: [] for d in devices}

    def pieces_at(self, asks: list[tuple[str, str, int]]) -> list[Piece]:
        self.lookups.append(asks)
        return [next(p for p in self.pieces if p[0] <= ts < p[1]) for _, _, ts in asks]

    def emit(self, device: str, probe: str, profile: str, events: list[Event]) -> None:
        for e in events:
            assert isinstance(e, BreachChange)
            b = e.breach
            self.emitted.append((probe, profile, type(e).__name__, b.rule, b.start, b.end))

    def judge(self, minutes: range, celsius: float | None, probe: str = "product") -> None:
        samples = [Sample(T0 + m * MINUTE, m, celsius) for m in minutes]
        self.stored.rows[("van", probe)].extend(samples)
        self.registry.judge("van", probe, samples)


def contained(device: str, key: str, work: Callable[..., object], *args: object) -> None:
    work(*args)  # as Containment.run does while nothing fails


def opened_and_closed(h: Harness) -> list[tuple[str, str, str, str, int, int | None]]:
    return [e for e in h.emitted if e[2] in ("BreachOpened", "BreachClosed")]


def test_an_excursion_past_the_delay_opens_at_its_first_warm_reading_and_closes_when_cool() -> None:
    """Chilled (0..+4 C, 15 min delay): 6 C from minute 10 to 39, in three batches."""
    h = Harness([(0, FAR_FUTURE_MS, "chilled")])
    h.judge(range(0, 10), 3.0)
    h.judge(range(10, 40), 6.0)
    h.judge(range(40, 60), 3.0)
    assert opened_and_closed(h) == [
        ("product", "chilled", "BreachOpened", "excursion_high", T0 + 10 * MINUTE, None),
        (
            "product",
            "chilled",
            "BreachClosed",
            "excursion_high",
            T0 + 10 * MINUTE,
            T0 + 40 * MINUTE,
        ),
    ]
    assert list(h.registry.engines) == [("van", "product")]
    assert h.registry.judged_by == {"van": "chilled"}


def test_a_blip_under_the_delay_is_no_breach() -> None:
    h = Harness([(0, FAR_FUTURE_MS, "chilled")])
    h.judge(range(0, 10), 3.0)
    h.judge(range(10, 16), 6.0)  # 6 minutes warm, then back
    h.judge(range(16, 40), 3.0)
    assert h.emitted == []


def test_a_probe_on_no_compartment_and_no_settings_profile_is_not_judged() -> None:
    h = Harness([(0, FAR_FUTURE_MS, None)])
    h.judge(range(0, 60), 9.0)
    assert (h.emitted, h.registry.engines) == ([], {})


def test_without_a_compartment_the_settings_profile_judges() -> None:
    h = Harness([(0, FAR_FUTURE_MS, None)], settings_profile=PROFILES["chilled"])
    h.judge(range(0, 10), 3.0)
    h.judge(range(10, 40), 6.0)
    assert opened_and_closed(h) == [
        ("product", "chilled", "BreachOpened", "excursion_high", T0 + 10 * MINUTE, None)
    ]


def test_a_breach_open_where_its_stretch_ends_closes_there() -> None:
    """A delivery (chilled) ends at minute 30 and the next one, chilled too, starts: the
    excursion that began at minute 10 closes at minute 30, and the next stretch, still warm,
    has a breach of its own from its first reading."""
    end = T0 + 30 * MINUTE
    h = Harness([(0, end, "chilled"), (end, FAR_FUTURE_MS, "chilled")])
    h.judge(range(0, 10), 3.0)
    h.judge(range(10, 60), 6.0)
    assert opened_and_closed(h) == [
        ("product", "chilled", "BreachOpened", "excursion_high", T0 + 10 * MINUTE, None),
        ("product", "chilled", "BreachOpened", "excursion_high", end, None),
        ("product", "chilled", "BreachClosed", "excursion_high", T0 + 10 * MINUTE, end),
    ]
    assert sorted(h.registry.engines[("van", "product")]) == [0, end]


def test_each_stretch_is_judged_by_its_own_profile() -> None:
    """Chilled until minute 30, deep-frozen (<= -18 C) after: -10 C from minute 30 on is a
    breach of deep-frozen only, one engine per stretch."""
    change = T0 + 30 * MINUTE
    h = Harness([(0, change, "chilled"), (change, FAR_FUTURE_MS, "deep-frozen")])
    h.judge(range(0, 30), 3.0)
    h.judge(range(30, 60), -10.0)
    assert [e[:5] for e in opened_and_closed(h)] == [
        ("product", "deep-frozen", "BreachOpened", "excursion_high", change)
    ]
    assert sorted(h.registry.engines[("van", "product")]) == [0, change]


def test_a_new_engine_is_rebuilt_from_the_stored_readings() -> None:
    """The engines forgotten mid-excursion (a restart, a retired engine): the next batch's
    engine is primed from what is stored, so the excursion keeps its start."""
    h = Harness([(0, FAR_FUTURE_MS, "chilled")])
    h.judge(range(0, 10), 3.0)
    h.judge(range(10, 30), 6.0)
    h.registry.forget("van", "product")
    h.emitted.clear()
    h.judge(range(30, 50), 3.0)
    assert opened_and_closed(h) == [
        ("product", "chilled", "BreachOpened", "excursion_high", T0 + 10 * MINUTE, None),
        (
            "product",
            "chilled",
            "BreachClosed",
            "excursion_high",
            T0 + 10 * MINUTE,
            T0 + 30 * MINUTE,
        ),
    ]


def test_idle_engines_are_retired_past_the_late_data_horizon() -> None:
    h = Harness([(0, FAR_FUTURE_MS, "chilled")])
    h.judge(range(0, 50), 3.0)
    h.now_ms = T0 + 49 * MINUTE + 60 * MINUTE  # newest reading exactly at the horizon: kept
    h.registry.retire_idle()
    assert h.registry.count() == 1
    h.now_ms += 1
    h.registry.retire_idle()
    assert (h.registry.count(), h.registry.engines) == (0, {})


def test_a_door_is_judged_by_the_settings_profile_only() -> None:
    h = Harness([(0, FAR_FUTURE_MS, "chilled")])  # the probes' compartment says chilled
    h.registry.judge("van", DOOR, [Sample(T0 + m * MINUTE, m, None, True) for m in range(30)])
    assert (h.emitted, h.registry.engines) == ([], {})  # no settings profile: no door rules


def test_engines_primed_together_conclude_as_when_each_reads_its_own() -> None:
    """A van's engines forgotten mid-excursion on both probes (a restart): primed before
    the batch (JudgeRegistry.prime), they read the store and the readings once for both
    probes, not once each, and ask about the probes' stretches in one lookup, and report
    exactly what they report unprimed."""
    outcomes = []
    for primed in (False, True):
        h = Harness([(0, FAR_FUTURE_MS, "chilled")])
        for probe in ("product", "air"):
            h.judge(range(0, 10), 3.0, probe)
            h.judge(range(10, 30), 6.0, probe)
            h.registry.forget("van", probe)
        h.emitted.clear()
        h.stored.reads.clear()
        h.asked.clear()
        h.lookups.clear()
        batch = {
            p: [Sample(T0 + m * MINUTE, m, 3.0) for m in range(30, 50)] for p in ("product", "air")
        }
        for probe, samples in batch.items():
            h.stored.rows[("van", probe)].extend(samples)
        if primed:
            h.registry.prime({"van": batch}, contained)
        for probe, samples in batch.items():
            h.registry.judge("van", probe, samples)
        h.registry.release()
        outcomes.append((opened_and_closed(h), h.stored.reads, h.asked, h.lookups))
    (alone, alone_reads, alone_asked, alone_lookups), (together, reads, asked, lookups) = outcomes
    assert (
        together
        == alone
        == [
            (probe, "chilled", change, "excursion_high", T0 + 10 * MINUTE, end)
            for probe in ("product", "air")
            for change, end in (("BreachOpened", None), ("BreachClosed", T0 + 30 * MINUTE))
        ]
    )
    assert (alone_reads, alone_asked) == (["van", "van"], [["van"], ["van"]])
    assert (reads, asked) == (["van"], [["van"]])
    first = T0 + 30 * MINUTE
    assert alone_lookups == [[("van", "product", first)], [("van", "air", first)]]
    assert lookups == [[("van", "product", first), ("van", "air", first)]]
    assert (h.registry.primed_breaches, h.registry.primed_samples) == ({}, {})  # released


def test_priming_reads_nothing_for_a_probe_no_profile_judges() -> None:
    h = Harness([(0, FAR_FUTURE_MS, None)])  # on no compartment, no settings profile
    h.registry.prime({"van": {"product": [Sample(T0, 0, 9.0)]}}, contained)
    assert (h.stored.reads, h.asked, h.registry.primed_samples) == ([], [], {})
