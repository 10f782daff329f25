"""The rules stage against the real InfluxDB and a migrated store (SQLite and PostgreSQL),
with an injected clock: silence, late backlogs, and readings that overflowed its queue."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from alerts.stage import RulesStage
from alerts.store import Breach
from coldtrace.contract import Reading
from coldtrace.influx import InfluxClient, quote_string
from coldtrace.settings import Settings
from ingest.clock import PlacedReading
from ingest.lines import reading_lines
from tests.conftest import act_on_delivery, put_on_delivery, wait_for

MINUTE = 60_000
T0 = 1_784_007_600_000  # 2026-07-14T05:40:00Z


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def readings(device: str, minutes: range, celsius: Callable[[int], float]) -> list[PlacedReading]:
    return [
        PlacedReading(
            device,
            1,
            Reading(seq=m, ts=T0 + m * MINUTE, up=m * MINUTE, probes={"product": celsius(m)}),
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
    return RulesStage(s, clock)


def breaches(stage: RulesStage, device: str) -> list[Breach]:
    return sorted(stage.store.known(device), key=lambda b: (b.start_ts, b.rule))


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
    assert stage.overflow == {device: (T0 + 20 * MINUTE, T0 + 49 * MINUTE)}
    stage.start()
    try:
        wait_for(lambda: [b.state for b in breaches(stage, device)] == ["closed"], what="breach")
    finally:
        stage.stop()
    (b,) = breaches(stage, device)
    assert (b.start_ts, b.end_ts) == (T0 + 10 * MINUTE, T0 + 40 * MINUTE)


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
    assert stage.engines == {} and device not in stage.primed
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
