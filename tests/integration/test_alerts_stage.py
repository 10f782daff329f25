"""The rules stage against the real InfluxDB and a migrated store (SQLite and PostgreSQL),
with an injected clock: silence, late backlogs, readings that overflowed its queue, and each
probe judged by the profile of the delivery under way in the compartment it measures."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.stage import RulesStage
from alerts.store import Notification
from coldtrace import influx as influx_adapter
from coldtrace.bootstrap import rules_stage
from coldtrace.breaches import Breach
from coldtrace.contract import Reading
from coldtrace.influx import InfluxClient, quote_string
from coldtrace.records import PlacedReading
from coldtrace.settings import Settings
from dashboards import definitions
from dashboards.queries import dashboard_queries
from ingest.lines import reading_lines
from tests.conftest import act_on_delivery, put_on_delivery, run_coldtrace, wait_for

MINUTE = 60_000
T0 = 1_784_007_600_000  # 2026-07-14T05:40:00Z


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def readings(
    device: str,
    minutes: range,
    celsius: Callable[[int], float],
    probes: tuple[str, ...] = ("product",),
    door: Callable[[int], bool | None] = lambda m: None,
) -> list[PlacedReading]:
    return [
        PlacedReading(
            device,
            1,
            Reading(
                seq=m,
                ts=T0 + m * MINUTE,
                up=m * MINUTE,
                probes={probe: celsius(m) for probe in probes},
                door=door(m),
            ),
            T0 + m * MINUTE,
            False,
        )
        for m in minutes
    ]


def store(influx: InfluxClient, placed: list[PlacedReading]) -> list[PlacedReading]:
    """What ingest does before it hands a batch to the stage."""
    lines: list[str] = []
    for p in placed:
        reading_lines(p, lines)
    influx.write("\n".join(lines).encode(), "ms")
    return placed


def make_stage(settings: Settings, database_url: str, clock: Clock, **extra: object) -> RulesStage:
    s = settings.model_copy(
        update={
            "database_url": database_url,
            "alerts_default_profile": "chilled",
            "alerts_silent_after_s": 900.0,
            **extra,
        }
    )
    return rules_stage(s, clock)


def breaches(stage: RulesStage, device: str) -> list[Breach]:
    return sorted(stage.store.known(device), key=lambda b: (b.start_ts, b.rule))


def open_in_grafana(influx: InfluxClient, device: str, to_ms: int) -> list[tuple[object, ...]]:
    """The rows of ``device`` in the Fleet now dashboard's "Open breaches" table, as InfluxDB
    answers its query over the hour before T0 up to ``to_ms`` (macros substituted as Grafana
    does): probe, rule, severity, peak, degree-minutes, duration (min), limit, start."""
    (query,) = [
        q
        for q in dashboard_queries(definitions.fleet_now(), {}, T0 - 60 * MINUTE, to_ms)
        if q.title == "Open breaches"
    ]
    return [
        (x["tags"]["probe"], x["tags"]["rule"], *row[1:])
        for x in influx.query(query.text)
        if x["tags"]["device"] == device
        for row in x["values"]
    ]


def test_silent_device_with_an_injected_clock(settings, influx, prefix, database_url) -> None:
    device = f"{prefix}-van"
    put_on_delivery(database_url, device, T0, "start")
    clock = Clock(T0 + 10 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    stage.evaluate(store(influx, readings(device, range(0, 10), lambda m: 3.0)))
    clock.ms = T0 + 24 * MINUTE  # 15 min after the last reading (minute 9): not yet
    stage.check_silence()
    assert breaches(stage, device) == []
    clock.ms = T0 + 25 * MINUTE
    stage.check_silence()
    (silent,) = breaches(stage, device)
    assert (silent.rule, silent.probe, silent.state, silent.start_ts) == (
        "device_silent",
        "",
        "open",
        T0 + 9 * MINUTE,
    )
    points = influx.rows(f"SELECT * FROM breach WHERE device = {quote_string(device)}")
    assert [(p["rule"], p["transition"]) for p in points] == [("device_silent", "opened")]
    # the backlog arrives: the silence ends at its newest reading, and it is judged as usual
    clock.ms = T0 + 31 * MINUTE
    stage.evaluate(store(influx, readings(device, range(10, 30), lambda m: 3.0)))
    (silent,) = breaches(stage, device)
    assert (silent.state, silent.end_ts) == ("closed", T0 + 29 * MINUTE)


def test_late_backlog_is_judged_in_place_and_flagged(
    settings, influx, prefix, database_url
) -> None:
    device = f"{prefix}-van"
    clock = Clock(T0 + 60 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    hot = lambda m: 6.0 if 10 <= m < 40 else 3.0  # noqa: E731
    stage.evaluate(store(influx, readings(device, range(0, 10), hot)))
    stage.evaluate(store(influx, readings(device, range(40, 60), hot)))
    assert breaches(stage, device) == []
    clock.ms = T0 + 61 * MINUTE
    stage.evaluate(store(influx, readings(device, range(10, 40), hot)))  # the spool, late
    (b,) = breaches(stage, device)
    assert (b.rule, b.start_ts, b.end_ts, b.state) == (
        "excursion_high",
        T0 + 10 * MINUTE,
        T0 + 40 * MINUTE,
        "closed",
    )
    assert b.detected_late and b.detected_at == T0 + 61 * MINUTE


def test_readings_that_overflow_the_queue_are_reread(
    settings, influx, prefix, database_url
) -> None:
    device = f"{prefix}-van"
    stage = make_stage(settings, database_url, Clock(T0 + 60 * MINUTE), alerts_queue_batches=1)
    hot = lambda m: 6.0 if 10 <= m < 40 else 3.0  # noqa: E731
    stage.observe(store(influx, readings(device, range(0, 20), hot)))
    stage.observe(store(influx, readings(device, range(20, 50), hot)))  # queue full: a span
    assert stage.runner.overflow == {device: (T0 + 20 * MINUTE, T0 + 49 * MINUTE)}
    stage.start()
    try:
        wait_for(lambda: [b.state for b in breaches(stage, device)] == ["closed"], what="breach")
    finally:
        stage.stop()
    (b,) = breaches(stage, device)
    assert (b.start_ts, b.end_ts) == (T0 + 10 * MINUTE, T0 + 40 * MINUTE)


def test_a_fleet_s_overflow_is_reread_together(
    settings, influx, prefix, database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two vans' second batches overflow the queue: their spans are reread from InfluxDB in
    one query per measurement, not one per device, and each van's excursion is found whole
    (6 C from minute 10 to 39 on the first, 20 to 44 on the second)."""
    vans = {f"{prefix}-van1": (10, 40), f"{prefix}-van2": (20, 45)}
    stage = make_stage(settings, database_url, Clock(T0 + 60 * MINUTE), alerts_queue_batches=1)

    def batch(minutes: range) -> list[PlacedReading]:
        return [
            p
            for van, (a, b) in vans.items()
            for p in readings(van, minutes, lambda m, a=a, b=b: 6.0 if a <= m < b else 3.0)
        ]

    stage.observe(store(influx, batch(range(0, 20))))
    stage.observe(store(influx, batch(range(20, 50))))  # queue full: a span per van
    assert stage.runner.overflow == dict.fromkeys(vans, (T0 + 20 * MINUTE, T0 + 49 * MINUTE))
    stage.evaluate(stage.runner.queue.get_nowait())  # the engines exist: only spans to read
    queries: list[str] = []
    rows = stage.influx.rows
    monkeypatch.setattr(stage.influx, "rows", lambda q: queries.append(q) or rows(q))
    stage.runner._reread_overflow()
    assert [q.split(" FROM ")[1].split()[0] for q in queries] == ["device_health", "temperature"]
    assert stage.runner.overflow == {}
    found = {van: [(b.rule, b.start_ts, b.end_ts) for b in breaches(stage, van)] for van in vans}
    assert found == {
        van: [("excursion_high", T0 + a * MINUTE, T0 + b * MINUTE)] for van, (a, b) in vans.items()
    }


def test_configured_suppression_window_from_settings(
    settings, influx, prefix, database_url
) -> None:
    from datetime import UTC, datetime

    device = f"{prefix}-van"
    window = [
        (datetime.fromtimestamp(T0 / 1000, UTC), datetime.fromtimestamp(T0 / 1000 + 3600, UTC))
    ]
    stage = make_stage(
        settings, database_url, Clock(T0 + 60 * MINUTE), alerts_suppress_windows={device: window}
    )
    hot = lambda m: 6.0 if 10 <= m < 40 else 3.0  # noqa: E731
    stage.evaluate(store(influx, readings(device, range(0, 60), hot)))
    (b,) = breaches(stage, device)
    assert (b.rule, b.suppressed, b.state) == ("excursion_high", True, "closed")


def test_idle_devices_are_retired_and_primed_again(settings, influx, prefix, database_url) -> None:
    device = f"{prefix}-van"
    clock = Clock(T0 + 60 * MINUTE)
    stage = make_stage(settings, database_url, clock, alerts_late_horizon_h=1.0)
    hot = lambda m: 6.0 if m >= 30 else 3.0  # noqa: E731
    stage.evaluate(store(influx, readings(device, range(0, 50), hot)))
    (opened,) = breaches(stage, device)
    assert opened.state == "open"
    clock.ms = T0 + 49 * MINUTE + 61 * MINUTE  # the newest reading is now past the horizon
    stage.retire_idle()
    assert stage.judges.engines == {}
    # it comes back still warm, then cools: the same breach closes, no second one opens
    stage.evaluate(store(influx, readings(device, range(50, 70), lambda m: 6.0 if m < 60 else 3.0)))
    (b,) = breaches(stage, device)
    assert (b.id, b.start_ts, b.end_ts) == (opened.id, T0 + 30 * MINUTE, T0 + 60 * MINUTE)


def test_a_silence_survives_a_restart(settings, influx, prefix, database_url) -> None:
    device = f"{prefix}-van"
    put_on_delivery(database_url, device, T0, "start")
    clock = Clock(T0 + 10 * MINUTE)
    first = make_stage(settings, database_url, clock)
    first.evaluate(store(influx, readings(device, range(0, 10), lambda m: 3.0)))
    clock.ms = T0 + 30 * MINUTE
    first.check_silence()
    (silent,) = breaches(first, device)
    # a new process: it knows the device from InfluxDB and the open silence from the store
    clock.ms = T0 + 40 * MINUTE
    second = make_stage(settings, database_url, clock)
    second.watch_known_devices()
    second.check_silence()
    assert [(b.id, b.state) for b in breaches(second, device)] == [(silent.id, "open")]
    second.evaluate(store(influx, readings(device, range(40, 42), lambda m: 3.0)))
    (b,) = breaches(second, device)
    assert (b.id, b.state, b.start_ts, b.end_ts) == (
        silent.id,
        "closed",
        T0 + 9 * MINUTE,
        T0 + 41 * MINUTE,
    )


@pytest.mark.parametrize("lifecycle", [None, (), ("start", "deliver"), ("start", "cancel")])
def test_a_device_on_no_delivery_in_transit_is_never_silent(
    settings, influx, prefix, database_url, lifecycle
) -> None:
    """No delivery at all, one only planned, one delivered, one cancelled on the way."""
    device = f"{prefix}-van"
    if lifecycle is not None:
        put_on_delivery(database_url, device, T0, *lifecycle)
    clock = Clock(T0 + 10 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    stage.evaluate(store(influx, readings(device, range(0, 10), lambda m: 3.0)))
    for minutes in (25, 60, 6 * 60):
        clock.ms = T0 + minutes * MINUTE
        stage.check_silence()
    assert breaches(stage, device) == []


def test_a_silence_ends_when_the_delivery_is_delivered(
    settings, influx, prefix, database_url
) -> None:
    device = f"{prefix}-van"
    delivery = put_on_delivery(database_url, device, T0, "start")
    clock = Clock(T0 + 10 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    stage.evaluate(store(influx, readings(device, range(0, 10), lambda m: 3.0)))
    clock.ms = T0 + 25 * MINUTE
    stage.check_silence()
    assert [b.state for b in breaches(stage, device)] == ["open"]
    act_on_delivery(database_url, delivery, "deliver", T0 + 30 * MINUTE)
    clock.ms = T0 + 31 * MINUTE  # when the stage next asks which deliveries are in transit
    stage.check_silence()
    (silent,) = breaches(stage, device)
    assert (silent.rule, silent.state, silent.start_ts, silent.end_ts) == (
        "device_silent",
        "closed",
        T0 + 9 * MINUTE,
        T0 + 31 * MINUTE,
    )
    points = influx.rows(f"SELECT * FROM breach WHERE device = {quote_string(device)}")
    assert sorted(p["transition"] for p in points) == ["closed", "opened"]
    # parked after the delivery: quiet for hours, and no new silence
    clock.ms = T0 + 10 * 60 * MINUTE
    stage.check_silence()
    assert len(breaches(stage, device)) == 1


def test_silence_counts_from_when_the_device_went_on_its_delivery(
    settings, influx, prefix, database_url
) -> None:
    device = f"{prefix}-van"
    clock = Clock(T0 + 10 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    stage.evaluate(store(influx, readings(device, range(0, 10), lambda m: 3.0)))
    # heard last at minute 9 in the depot; its delivery leaves at minute 120
    put_on_delivery(database_url, device, T0 + 120 * MINUTE, "start")
    clock.ms = T0 + 135 * MINUTE
    stage.check_silence()
    assert breaches(stage, device) == []
    clock.ms = T0 + 136 * MINUTE
    stage.check_silence()
    (silent,) = breaches(stage, device)
    assert (silent.rule, silent.state, silent.start_ts) == (
        "device_silent",
        "open",
        T0 + 120 * MINUTE,
    )


def excursions(stage: RulesStage, device: str) -> list[tuple[str, str, int, int | None, str]]:
    return [
        (b.probe, b.profile, b.start_ts, b.end_ts, b.state)
        for b in breaches(stage, device)
        if b.rule == "excursion_high"
    ]


def pharma_delivery_in_a_chilled_compartment(database_url: str, device: str) -> None:
    """The product probe measures the chilled compartment from T0; a pharma delivery (2..8 C)
    is under way there from minute 60 to minute 180."""
    delivery = put_on_delivery(database_url, device, T0, profile="pharma")
    act_on_delivery(database_url, delivery, "start", T0 + 60 * MINUTE)
    act_on_delivery(database_url, delivery, "deliver", T0 + 180 * MINUTE)


def test_each_probe_is_judged_by_the_profile_of_the_delivery_under_way(
    settings, influx, prefix, database_url
) -> None:
    """6 C breaches the chilled compartment's 0..4 C before and after the delivery, not the
    pharma delivery's 2..8 C during it; the backlog spans both its start and its end. No
    settings profile: the store alone decides."""
    device = f"{prefix}-van"
    pharma_delivery_in_a_chilled_compartment(database_url, device)
    stage = make_stage(
        settings, database_url, Clock(T0 + 5 * 60 * MINUTE), alerts_default_profile=None
    )
    warm = lambda m: 6.0 if 20 <= m < 50 or 80 <= m < 150 or 200 <= m < 230 else 3.0  # noqa: E731
    stage.evaluate(store(influx, readings(device, range(0, 240), warm)))
    assert excursions(stage, device) == [
        ("product", "chilled", T0 + 20 * MINUTE, T0 + 50 * MINUTE, "closed"),
        ("product", "chilled", T0 + 200 * MINUTE, T0 + 230 * MINUTE, "closed"),
    ]
    during = [
        b for b in breaches(stage, device) if T0 + 60 * MINUTE <= b.start_ts < T0 + 181 * MINUTE
    ]
    assert during == []


def test_a_breach_open_when_the_delivery_starts_closes_there(
    settings, influx, prefix, database_url
) -> None:
    device = f"{prefix}-van"
    pharma_delivery_in_a_chilled_compartment(database_url, device)
    stage = make_stage(settings, database_url, Clock(T0 + 2 * 60 * MINUTE))
    # 6 C from minute 30 on: too warm for chilled, fine for the pharma delivery from minute 60
    warm = lambda m: 6.0 if m >= 30 else 3.0  # noqa: E731
    for first in range(0, 120, 10):  # live, ten minutes a batch
        stage.evaluate(store(influx, readings(device, range(first, first + 10), warm)))
    assert excursions(stage, device) == [
        ("product", "chilled", T0 + 30 * MINUTE, T0 + 60 * MINUTE, "closed"),
    ]


def test_a_restart_mid_delivery_keeps_its_breach(settings, influx, prefix, database_url) -> None:
    device = f"{prefix}-van"
    pharma_delivery_in_a_chilled_compartment(database_url, device)
    hot = lambda m: 10.0 if 90 <= m < 130 else 5.0  # noqa: E731  # above pharma's 8 C
    first = make_stage(settings, database_url, Clock(T0 + 110 * MINUTE))
    first.evaluate(store(influx, readings(device, range(60, 110), hot)))
    (opened,) = excursions(first, device)
    assert opened == ("product", "pharma", T0 + 90 * MINUTE, None, "open")
    second = make_stage(settings, database_url, Clock(T0 + 140 * MINUTE))  # a new process
    second.evaluate(store(influx, readings(device, range(110, 140), hot)))
    assert excursions(second, device) == [
        ("product", "pharma", T0 + 90 * MINUTE, T0 + 130 * MINUTE, "closed")
    ]
    assert len([b for b in breaches(second, device) if b.rule == "excursion_high"]) == 1


def test_a_probe_on_no_compartment_is_judged_by_the_settings_profile(
    settings, influx, prefix, database_url
) -> None:
    """The air probe is assigned to no compartment: chilled from the settings; the product
    probe, on the pharma delivery, is not in breach at the same 6 C."""
    device = f"{prefix}-van"
    pharma_delivery_in_a_chilled_compartment(database_url, device)
    stage = make_stage(settings, database_url, Clock(T0 + 3 * 60 * MINUTE))
    warm = lambda m: 6.0 if m >= 90 else 3.0  # noqa: E731
    stage.evaluate(store(influx, readings(device, range(60, 150), warm, ("product", "air"))))
    assert excursions(stage, device) == [("air", "chilled", T0 + 90 * MINUTE, None, "open")]


@pytest.mark.parametrize("resumed", [60, 61])
def test_a_breach_open_when_the_delivery_is_delivered_closes_there(
    settings, influx, prefix, database_url, resumed
) -> None:
    """Live: the stage learns that the delivery in transit was delivered when it next asks
    the store; the probe is judged by the chilled compartment's profile from then on. With
    a reading at the delivery's end or with none (the next one is in the chilled stretch)."""
    device = f"{prefix}-van"
    delivery = put_on_delivery(database_url, device, T0, "start", profile="pharma")
    clock = Clock(T0 + 60 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    hot = lambda m: 10.0 if m >= 30 else 5.0  # noqa: E731  # above pharma's 8 C
    stage.evaluate(store(influx, readings(device, range(0, 60), hot)))
    assert excursions(stage, device) == [("product", "pharma", T0 + 30 * MINUTE, None, "open")]
    act_on_delivery(database_url, delivery, "deliver", T0 + 60 * MINUTE)
    clock.ms = T0 + 90 * MINUTE
    stage.evaluate(store(influx, readings(device, range(resumed, 90), hot)))
    # the delivery's window includes its end: chilled from the millisecond after it
    assert excursions(stage, device) == [
        ("product", "pharma", T0 + 30 * MINUTE, T0 + 60 * MINUTE + 1, "closed"),
        ("product", "chilled", T0 + 61 * MINUTE, None, "open"),
    ]


def test_a_device_judged_by_its_delivery_alone_is_watched_for_silence(
    settings, influx, prefix, database_url
) -> None:
    """No settings profile: the silence on a pharma delivery in transit is filed under it."""
    device = f"{prefix}-van"
    put_on_delivery(database_url, device, T0, "start", profile="pharma")
    clock = Clock(T0 + 10 * MINUTE)
    stage = make_stage(settings, database_url, clock, alerts_default_profile=None)
    stage.evaluate(store(influx, readings(device, range(0, 10), lambda m: 5.0)))
    clock.ms = T0 + 25 * MINUTE
    stage.check_silence()
    (silent,) = breaches(stage, device)
    assert (silent.rule, silent.profile, silent.state, silent.start_ts) == (
        "device_silent",
        "pharma",
        "open",
        T0 + 9 * MINUTE,
    )


def test_the_engine_of_a_delivery_long_over_is_retired(
    settings, influx, prefix, database_url
) -> None:
    """A device that never goes quiet keeps only the engines of its recent stretches."""
    device = f"{prefix}-van"
    pharma_delivery_in_a_chilled_compartment(database_url, device)
    clock = Clock(T0 + 240 * MINUTE)
    stage = make_stage(settings, database_url, clock, alerts_late_horizon_h=1.0)
    stage.evaluate(store(influx, readings(device, range(0, 240), lambda m: 3.0)))
    before, during, after = T0, T0 + 60 * MINUTE, T0 + 180 * MINUTE + 1
    assert sorted(stage.judges.engines[(device, "product")]) == [before, during, after]
    clock.ms = T0 + 241 * MINUTE  # the delivery's newest reading is now past the horizon
    stage.retire_idle()
    assert sorted(stage.judges.engines[(device, "product")]) == [after]


def judged(stage: RulesStage, device: str) -> list[tuple[object, ...]]:
    """What a quality manager reads of each breach (and when it was last changed)."""
    return [
        (
            *(b.probe, b.rule, b.profile, b.start_ts, b.end_ts, b.state, b.severity, b.peak),
            b.degree_minutes,
            b.updated_at,
        )
        for b in breaches(stage, device)
    ]


def transitions(influx: InfluxClient, device: str) -> list[tuple[str, int, str]]:
    rows = influx.rows(f"SELECT * FROM breach WHERE device = {quote_string(device)}")
    return sorted((r["rule"], int(r["start"]), r["transition"]) for r in rows)


def hot_in_the_pharma_window(m: int) -> float:
    """10 C (above pharma's 8 C) from minute 12 to 23 and from minute 30 until the delivery
    is delivered at minute 60; 5 C otherwise, 3 C (fine for chilled) after it."""
    if m > 60:
        return 3.0
    return 10.0 if 12 <= m < 24 or m >= 30 else 5.0


@pytest.mark.parametrize("restarted", [False, True])
def test_a_backlog_into_a_delivery_already_delivered_gives_the_on_time_breaches(
    settings, influx, prefix, database_url, restarted
) -> None:
    """The van spools minutes 10-29 of a pharma delivery and sends them after it was
    delivered (and its breach open then closed at the delivery's end): the breaches are
    those of a van that sent everything on time, the one closed at the delivery's end is not
    reopened, and replaying the backlog, or everything, changes nothing."""
    on_time, spooled = f"{prefix}-on-time", f"{prefix}-spooled"
    clock = Clock(T0 + 60 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    for device in (on_time, spooled):
        delivery = put_on_delivery(database_url, device, T0, "start", profile="pharma")
        live = range(0, 61) if device == on_time else [*range(0, 10), *range(30, 61)]
        stage.evaluate(store(influx, readings(device, live, hot_in_the_pharma_window)))
        act_on_delivery(database_url, delivery, "deliver", T0 + 60 * MINUTE)
    clock.ms = T0 + 90 * MINUTE
    for device in (on_time, spooled):
        stage.evaluate(store(influx, readings(device, range(61, 90), hot_in_the_pharma_window)))
    assert excursions(stage, spooled) == [
        ("product", "pharma", T0 + 30 * MINUTE, T0 + 60 * MINUTE + 1, "closed")
    ]
    clock.ms = T0 + 100 * MINUTE
    if restarted:
        stage = make_stage(settings, database_url, clock)
    backlog = store(influx, readings(spooled, range(10, 30), hot_in_the_pharma_window))
    stage.evaluate(backlog)
    expected = [b[:-1] for b in judged(stage, on_time)]
    assert excursions(stage, on_time) == [
        ("product", "pharma", T0 + 12 * MINUTE, T0 + 24 * MINUTE, "closed"),
        ("product", "pharma", T0 + 30 * MINUTE, T0 + 60 * MINUTE + 1, "closed"),
    ]
    assert [b[:-1] for b in judged(stage, spooled)] == expected
    late = [b for b in breaches(stage, spooled) if b.start_ts == T0 + 12 * MINUTE]
    assert late and all(b.detected_late for b in late)
    # in InfluxDB (Grafana) too: each breach opened and closed once, none revised or reopened
    assert transitions(influx, spooled) == transitions(influx, on_time)
    points = f"SELECT count(id) FROM breach WHERE device = {quote_string(spooled)}"
    before = judged(stage, spooled), influx.rows(points)
    clock.ms = T0 + 110 * MINUTE
    stage.evaluate(backlog)
    stage.evaluate(readings(spooled, range(0, 90), hot_in_the_pharma_window))
    assert (judged(stage, spooled), influx.rows(points)) == before


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (10.0, [("product", "chilled", T0 + 61 * MINUTE, None, "open")]),  # too warm for both
        (1.0, []),  # too cold for pharma (2..8 C), fine for chilled (0..4 C)
    ],
)
def test_readings_judged_before_the_stage_learns_of_a_delivery_end_are_judged_again(
    settings, influx, prefix, database_url, after, expected
) -> None:
    """The stage asks the store which profile applies at most every 10 s: readings of the
    minutes after the delivery was delivered that arrive within those 10 s are judged by the
    pharma delivery's profile at first. Once it asks again, the breaches are those of a stage
    that knew of the delivery's end (chilled from then on), and no pharma breach is left."""
    stale, fresh = f"{prefix}-stale", f"{prefix}-fresh"
    warm_after = lambda m: after if m > 60 else 5.0  # noqa: E731
    clock = Clock(T0 + 60 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    for device in (stale, fresh):
        delivery = put_on_delivery(database_url, device, T0, "start", profile="pharma")
        if device == stale:
            stage.evaluate(store(influx, readings(device, range(0, 61), warm_after)))
        act_on_delivery(database_url, delivery, "deliver", T0 + 60 * MINUTE)
    clock.ms += 5_000  # the store not asked again yet: still "in transit" for the stage
    stage.evaluate(store(influx, readings(stale, range(61, 76), warm_after)))
    clock.ms = T0 + 90 * MINUTE
    stage.evaluate(store(influx, readings(stale, range(76, 90), warm_after)))
    assert [e for e in excursions(stage, stale) if e[2] > T0 + 60 * MINUTE] == expected
    assert not [b for b in breaches(stage, stale) if b.profile == "pharma" and b.end_ts is None]
    knew = make_stage(settings, database_url, clock)
    knew.evaluate(store(influx, readings(fresh, range(0, 90), warm_after)))
    assert [b[:-1] for b in judged(stage, stale)] == [b[:-1] for b in judged(knew, fresh)]


def test_editing_a_delivery_s_profile_judges_its_breaches_again(
    settings, influx, prefix, database_url
) -> None:
    """A chilled delivery entered as pharma by mistake, corrected in the store while in
    transit: its breaches are then those of a delivery entered as chilled; the pharma ones
    (1 C is too cold for pharma, not for chilled) are withdrawn, none is left open."""
    from sqlalchemy.orm import Session

    from coldtrace.db import make_engine
    from coldtrace.deliveries.models import Delivery

    mistaken, right = f"{prefix}-mistaken", f"{prefix}-right"
    cold_then_warm = lambda m: 1.0 if m < 20 else 10.0  # noqa: E731
    clock = Clock(T0 + 40 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    delivery = put_on_delivery(database_url, mistaken, T0, "start", profile="pharma")
    stage.evaluate(store(influx, readings(mistaken, range(0, 40), cold_then_warm)))
    assert {b.profile for b in breaches(stage, mistaken)} == {"pharma"}
    engine = make_engine(database_url)
    with Session(engine) as session:
        session.get_one(Delivery, delivery).profile = "chilled"
        session.commit()
    engine.dispose()
    clock.ms = T0 + 60 * MINUTE
    stage.evaluate(store(influx, readings(mistaken, range(40, 60), cold_then_warm)))
    put_on_delivery(database_url, right, T0, "start", profile="chilled")
    stage.evaluate(store(influx, readings(right, range(0, 60), cold_then_warm)))
    assert excursions(stage, mistaken) == [("product", "chilled", T0 + 20 * MINUTE, None, "open")]
    assert [b[:-1] for b in judged(stage, mistaken)] == [b[:-1] for b in judged(stage, right)]


def test_a_probe_on_no_compartment_first_in_the_payload_leaves_the_others_judged(
    settings, influx, prefix, database_url
) -> None:
    """The usual wiring: ``air`` watches the cabin and belongs to no compartment, ``product``
    measures the chilled compartment; no settings profile, so nothing judges ``air``. The
    product at 6.5 C from minute 10 to 39 is one breach; nothing is quarantined."""
    device = f"{prefix}-van"
    put_on_delivery(database_url, device, T0, "start")
    stage = make_stage(settings, database_url, Clock(T0 + 60 * MINUTE), alerts_default_profile=None)
    warm = lambda m: 6.5 if 10 <= m < 40 else 3.0  # noqa: E731
    for first in range(0, 60, 10):  # live, ten minutes a batch, ``air`` first in each reading
        stage.evaluate(
            store(influx, readings(device, range(first, first + 10), warm, ("air", "product")))
        )
    assert excursions(stage, device) == [
        ("product", "chilled", T0 + 10 * MINUTE, T0 + 40 * MINUTE, "closed")
    ]
    assert (stage.quarantined, stage.errors, stage.problems()) == ({}, 0, [])


def test_an_error_judging_one_probe_quarantines_that_probe_alone(
    settings, influx, prefix, database_url, monkeypatch, caplog
) -> None:
    """An exception while judging van A's ``air``: A's ``product`` and van B are judged all
    the same, in this batch and the next; ``air`` is quarantined, logged once, counted, and
    named in the stage's problems (ingest's /health)."""
    a, b = f"{prefix}-a", f"{prefix}-b"
    clock = Clock(T0 + 60 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    judge = stage._judge

    def broken(device: str, key: str, samples: list[object]) -> None:
        if (device, key) == (a, "air"):
            raise RuntimeError("injected")
        judge(device, key, samples)  # type: ignore[arg-type]

    monkeypatch.setattr(stage, "_judge", broken)
    warm = lambda m: 6.5 if 10 <= m < 40 else 3.0  # noqa: E731
    with caplog.at_level("ERROR", logger="alerts.stage"):
        for first in range(0, 60, 30):
            batch = readings(a, range(first, first + 30), warm, ("air", "product"))
            batch += readings(b, range(first, first + 30), warm)
            stage.evaluate(store(influx, batch))
    span = (T0 + 10 * MINUTE, T0 + 40 * MINUTE, "closed")
    assert excursions(stage, a) == [("product", "chilled", *span)]
    assert excursions(stage, b) == [("product", "chilled", *span)]
    assert list(stage.quarantined) == [(a, "air")]
    assert stage.quarantined[(a, "air")].error == "RuntimeError: injected"
    assert stage.problems() == [f"rules: {a}/air quarantined: RuntimeError: injected"]
    assert [r.message for r in caplog.records if r.levelname == "ERROR"] == [
        f"rules: {a}/air quarantined: not judged until ingest restarts"
    ]
    figures = stage.metrics()
    assert (
        figures["alerts_quarantined_probes"],
        figures["alerts_errors_total"],
        figures["alerts_readings_unjudged_total"],
    ) == (1, 1, 30)  # the second batch's 30 air readings


def test_a_probe_appearing_and_disappearing_mid_delivery_is_judged_while_it_reports(
    settings, influx, prefix, database_url
) -> None:
    """``product`` reports from minute 20 to 49 only (plugged in late, then unplugged), warm
    from 30 to 49: its breach opens and stays open (its last reading is out of range); the
    always-present ``air`` (settings' chilled) is judged throughout with no breach."""
    device = f"{prefix}-van"
    put_on_delivery(database_url, device, T0, "start")
    stage = make_stage(settings, database_url, Clock(T0 + 80 * MINUTE))
    batches = [
        readings(device, range(0, 20), lambda m: 3.0, ("air",)),
        readings(device, range(20, 30), lambda m: 3.0, ("air", "product")),
        [  # the product warm, the air not
            p._replace(
                reading=p.reading.model_copy(update={"probes": {**p.reading.probes, "air": 3.0}})
            )
            for p in readings(device, range(30, 50), lambda m: 6.5, ("product",))
        ],
        readings(device, range(50, 80), lambda m: 3.0, ("air",)),
    ]
    for placed in batches:
        stage.evaluate(store(influx, placed))
    assert excursions(stage, device) == [("product", "chilled", T0 + 30 * MINUTE, None, "open")]
    assert stage.quarantined == {}


def test_a_device_moved_to_another_vehicle_is_judged_by_its_new_compartment(
    settings, influx, prefix, database_url
) -> None:
    """The logger measures van 1's chilled compartment (0..4 C), then from minute 60 van 2's
    deep-frozen one (<= -18 C): -10 C after the move breaches deep-frozen at once (past its
    -15 C critical limit); the 3 C before it was in range for chilled."""
    device = f"{prefix}-van"
    put_on_delivery(database_url, device, T0)  # van 1: chilled, from T0
    from sqlalchemy.orm import Session

    from coldtrace.db import make_engine
    from coldtrace.deliveries.store import Store

    engine = make_engine(database_url)
    with Session(engine) as session:
        s = Store(session, "test", clock=lambda: T0 + 60 * MINUTE)
        s.create_vehicle(f"{device}-van2", "Van 2", {"freezer": "deep-frozen"})
        s.assign(device, "product", f"{device}-van2", "freezer", T0 + 60 * MINUTE)
        session.commit()
    engine.dispose()
    stage = make_stage(
        settings, database_url, Clock(T0 + 120 * MINUTE), alerts_default_profile=None
    )
    cold = lambda m: 3.0 if m < 60 else -10.0  # noqa: E731
    stage.evaluate(store(influx, readings(device, range(0, 120), cold)))
    judged = [(b.probe, b.profile, b.rule, b.start_ts, b.state) for b in breaches(stage, device)]
    assert judged == [("product", "deep-frozen", "excursion_high", T0 + 60 * MINUTE, "open")]


def test_an_open_breach_is_stored_with_its_figures_as_of_the_newest_reading(
    settings, influx, prefix, database_url, api
) -> None:
    """Chilled (0..4 C, 15 min delay), 6 C from minute 0 then 7 C from minute 20: the open
    excursion's stored peak and degree-minutes follow each batch (30 C*min when it opened at
    minute 15, 38 at minute 19, 52 at minute 24), as the API and `coldtrace breaches list`
    show it, notifying only when it opens and closes."""
    device = f"{prefix}-van"
    clock = Clock(T0 + 20 * MINUTE)
    stage = make_stage(
        settings,
        database_url,
        clock,
        notify_webhook_url="http://127.0.0.1:9/hook",
        notify_webhook_secret=SecretStr("s3cret"),
    )
    warm = lambda m: 6.0 if m < 20 else (7.0 if m < 25 else 3.0)  # noqa: E731

    def excursion() -> tuple[object, ...]:
        (b,) = [b for b in breaches(stage, device) if b.rule == "excursion_high"]
        return (b.state, b.end_ts, b.peak, b.degree_minutes, b.updated_at)

    stage.evaluate(store(influx, readings(device, range(0, 20), warm)))
    assert excursion() == ("open", None, 6.0, 38.0, T0 + 20 * MINUTE)
    clock.ms = T0 + 25 * MINUTE
    stage.evaluate(store(influx, readings(device, range(20, 25), warm)))
    assert excursion() == ("open", None, 7.0, 52.0, T0 + 25 * MINUTE)
    shown = lambda b: (  # noqa: E731
        *(b["rule"], b["state"], b["peak"], b["degree_minutes"], b["duration_min"]),
        b["through"],
    )
    listed = api.ok("GET", f"/breaches?device={device}&state=open")["items"]
    through = "2026-07-14T06:04:00Z"  # minute 24, the newest reading judged
    assert [shown(b) for b in listed] == [("excursion_high", "open", 7.0, 52.0, 24.0, through)]
    # Grafana shows it as it stands too, not as it opened (6 C, 30 C*min)
    assert open_in_grafana(influx, device, T0 + 25 * MINUTE) == [
        ("product", "excursion_high", "major", 7.0, 52.0, 24.0, 4.0, T0)
    ]
    cli = run_coldtrace(
        *("breaches", "list", "--open", "--device", device, "--json"),
        COLDTRACE_DATABASE_URL=database_url,
        COLDTRACE_RUN_DIR=str(api.settings.run_dir),
    )
    assert cli.returncode == 0, cli.stderr
    listed = json.loads(cli.stdout)
    assert [(b["rule"], b["peak_c"], b["degree_minutes"], b["duration_min"]) for b in listed] == [
        ("excursion_high", 7.0, 52.0, 24.0)
    ]
    clock.ms = T0 + 26 * MINUTE
    stage.evaluate(store(influx, readings(device, range(25, 26), warm)))
    assert excursion() == ("closed", T0 + 25 * MINUTE, 7.0, 55.0, T0 + 26 * MINUTE)
    (closed,) = api.ok("GET", f"/breaches?device={device}")["items"]
    assert closed["duration_min"] == 25.0

    def outbox(session: Session) -> list[tuple[str, float | None]]:
        rows = session.scalars(select(Notification).order_by(Notification.id))
        return [(n.transition, json.loads(n.payload)["peak_c"]) for n in rows]

    assert stage.store.ask(outbox) == [("opened", 6.0), ("closed", 7.0)]
    assert open_in_grafana(influx, device, T0 + 26 * MINUTE) == []
    points = influx.rows(
        "SELECT transition, state, peak, degree_minutes, duration_min FROM breach"
        f" WHERE device = {quote_string(device)} AND rule = 'excursion_high'"
    )
    # Its updates at the readings their figures run up to, with no state: Grafana reads the
    # state from the last point that has one, a transition.
    assert [
        (p["time"], p["transition"], p["state"], p["peak"], p["degree_minutes"], p["duration_min"])
        for p in points
    ] == [
        (T0, "opened", "open", 6.0, 30.0, 15.0),
        (T0 + 19 * MINUTE, "updated", None, 6.0, 38.0, 19.0),
        (T0 + 24 * MINUTE, "updated", None, 7.0, 52.0, 24.0),
        (T0 + 25 * MINUTE, "closed", "closed", 7.0, 55.0, 25.0),
    ]


def test_an_open_door_is_stored_lasting_up_to_its_newest_reading(
    settings, influx, prefix, database_url, api
) -> None:
    """Chilled: the door may stay open 10 min. Open from minute 0, in batches of ten
    minutes: stored open at minute 10 running to minute 19 (the batch's newest reading, 19
    min), then to minute 39 (39 min), as the API and Grafana's open breaches show it; shut
    at minute 40, it closes there (40 min). Notified when it opens and closes only."""
    device = f"{prefix}-van"
    clock = Clock(T0 + 20 * MINUTE)
    stage = make_stage(
        settings,
        database_url,
        clock,
        notify_webhook_url="http://127.0.0.1:9/hook",
        notify_webhook_secret=SecretStr("s3cret"),
    )
    is_open = lambda m: m < 40  # noqa: E731

    def door() -> tuple[object, ...]:
        (b,) = [b for b in breaches(stage, device) if b.rule == "door_open"]
        return (b.probe, b.state, b.start_ts, b.through_ts, b.duration_min, b.updated_at)

    stage.evaluate(store(influx, readings(device, range(0, 20), lambda m: 3.0, door=is_open)))
    assert door() == ("", "open", T0, T0 + 19 * MINUTE, 19.0, T0 + 20 * MINUTE)
    clock.ms = T0 + 30 * MINUTE
    stage.evaluate(store(influx, readings(device, range(20, 30), lambda m: 3.0, door=is_open)))
    clock.ms = T0 + 40 * MINUTE
    stage.evaluate(store(influx, readings(device, range(30, 40), lambda m: 3.0, door=is_open)))
    assert door() == ("", "open", T0, T0 + 39 * MINUTE, 39.0, T0 + 40 * MINUTE)
    (listed,) = api.ok("GET", f"/breaches?device={device}&state=open")["items"]
    assert (listed["rule"], listed["through"], listed["duration_min"]) == (
        "door_open",
        "2026-07-14T06:19:00Z",  # minute 39
        39.0,
    )
    assert open_in_grafana(influx, device, T0 + 40 * MINUTE) == [
        ("", "door_open", "major", None, 0.0, 39.0, None, T0)
    ]
    clock.ms = T0 + 41 * MINUTE
    stage.evaluate(store(influx, readings(device, range(40, 41), lambda m: 3.0, door=is_open)))
    assert door() == ("", "closed", T0, T0 + 40 * MINUTE, 40.0, T0 + 41 * MINUTE)

    def outbox(session: Session) -> list[str]:
        return list(session.scalars(select(Notification.transition).order_by(Notification.id)))

    assert stage.store.ask(outbox) == ["opened", "closed"]
    assert open_in_grafana(influx, device, T0 + 41 * MINUTE) == []
    points = influx.rows(
        f"SELECT transition, state, duration_min FROM breach WHERE device = {quote_string(device)}"
    )
    assert [(p["time"], p["transition"], p["state"], p["duration_min"]) for p in points] == [
        (T0, "opened", "open", 10.0),
        (T0 + 19 * MINUTE, "updated", None, 19.0),
        (T0 + 29 * MINUTE, "updated", None, 29.0),
        (T0 + 39 * MINUTE, "updated", None, 39.0),
        (T0 + 40 * MINUTE, "closed", "closed", 40.0),
    ]


def test_a_breach_closed_where_its_last_update_ran_is_not_open_in_grafana(
    settings, influx, prefix, database_url
) -> None:
    """Chilled (0..4 C, hysteresis 0.2 C): 6 C from minute 0 (open from minute 15), 3.9 C
    from minute 20 (back, but within the hysteresis: it runs to minute 20, 40 C*min), 3 C at
    minute 25 closes it at minute 20. Its last update and its close are points of the same
    time: Grafana's open breaches still lose it, the update having no state."""
    device = f"{prefix}-van"
    clock = Clock(T0 + 26 * MINUTE)
    stage = make_stage(settings, database_url, clock)
    cooling = lambda m: 6.0 if m < 20 else (3.9 if m < 25 else 3.0)  # noqa: E731
    for batch in (range(0, 20), range(20, 25)):
        stage.evaluate(store(influx, readings(device, batch, cooling)))
    assert open_in_grafana(influx, device, T0 + 26 * MINUTE) == [
        ("product", "excursion_high", "major", 6.0, 40.0, 20.0, 4.0, T0)
    ]
    stage.evaluate(store(influx, readings(device, range(25, 26), cooling)))
    assert open_in_grafana(influx, device, T0 + 26 * MINUTE) == []
    points = influx.rows(
        "SELECT transition, state, degree_minutes, duration_min FROM breach"
        f" WHERE device = {quote_string(device)} AND rule = 'excursion_high'"
    )
    assert sorted(
        (p["time"], p["transition"], p["state"], p["degree_minutes"], p["duration_min"])
        for p in points
    ) == [
        (T0, "opened", "open", 30.0, 15.0),
        (T0 + 19 * MINUTE, "updated", None, 38.0, 19.0),
        (T0 + 20 * MINUTE, "closed", "closed", 40.0, 20.0),
        (T0 + 20 * MINUTE, "updated", None, 40.0, 20.0),
    ]


def test_devices_rebuilt_together_after_a_restart_reach_the_state_each_reaches_alone(
    settings, influx, prefix, database_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart a fleet's first batches come together, and the engines they create
    read their history together (JudgeRegistry.prime: two InfluxDB queries per 100 devices
    whose histories start within an hour). Three devices, twice: one set restarted by one
    batch of all three, the other device by device through the stage's per-probe reads (as
    for readings that overflowed its queue). Every breach must come out the same, field by
    field: A's excursion open at the restart stays open, B's closed excursion stays closed
    and its door left open stays open, C (a day and a half earlier: read apart) has none.
    Two devices a query, so the chunking is crossed too."""
    monkeypatch.setattr(influx_adapter, "DEVICES_PER_QUERY", 2)
    late = 36 * 60  # minutes: A and B a day and a half after C
    scenes: dict[str, tuple[int, Callable[[int], float], Callable[[int], bool | None]]] = {
        "a": (late, lambda m: 6.0 if m >= late + 30 else 3.0, lambda m: False),
        "b": (late, lambda m: 6.0 if late + 10 <= m < late + 40 else 3.0, lambda m: m >= late + 45),
        "c": (0, lambda m: 3.0, lambda m: False),
    }
    together = {k: f"{prefix}-together-{k}" for k in scenes}
    alone = {k: f"{prefix}-alone-{k}" for k in scenes}

    def batch(device: str, key: str, minutes: range) -> list[PlacedReading]:
        start, celsius, door = scenes[key]
        shifted = range(start + minutes.start, start + minutes.stop)
        return readings(device, shifted, celsius, ("product", "air"), door)

    clock = Clock(T0 + (late + 60) * MINUTE)
    first = make_stage(settings, database_url, clock)
    for key in scenes:
        for device in (together[key], alone[key]):
            for m in range(0, 60, 10):  # live, ten minutes a batch
                first.evaluate(store(influx, batch(device, key, range(m, m + 10))))
    clock.ms = T0 + (late + 70) * MINUTE
    second = make_stage(settings, database_url, clock)  # a new process
    queries: list[str] = []
    rows = second.influx.rows
    monkeypatch.setattr(second.influx, "rows", lambda q: queries.append(q) or rows(q))
    second.evaluate(
        store(influx, [p for k in scenes for p in batch(together[k], k, range(60, 70))])
    )
    assert len(queries) == 4  # two groups of histories (C apart), each a query per measurement
    for key in scenes:
        placed = store(influx, batch(alone[key], key, range(60, 70)))
        lo, hi = placed[0].ts, placed[-1].ts
        second.judge_stored(alone[key], second.stored({alone[key]: (lo, hi)})[alone[key]], hi)

    def content(device: str) -> list[tuple[object, ...]]:
        return sorted(
            (
                *(b.probe, b.rule, b.profile, b.start_ts, b.end_ts, b.state, b.severity, b.peak),
                *(b.degree_minutes, b.limit_c, b.through_ts, b.detected_late, b.suppressed),
            )
            for b in breaches(second, device)
        )

    assert {k: content(d) for k, d in together.items()} == {k: content(d) for k, d in alone.items()}
    summary = {
        k: sorted((b.probe, b.rule, b.start_ts, b.end_ts, b.state) for b in breaches(second, d))
        for k, d in together.items()
    }
    at = lambda m: T0 + (late + m) * MINUTE  # noqa: E731
    assert summary == {
        "a": [
            (probe, rule, at(start), None, "open")
            for probe in ("air", "product")
            for rule, start in (("cumulative", 61), ("excursion_high", 30))
        ],
        "b": [
            ("", "door_open", at(45), None, "open"),
            ("air", "excursion_high", at(10), at(40), "closed"),
            ("product", "excursion_high", at(10), at(40), "closed"),
        ],
        "c": [],
    }
