"""The simulated fleet without I/O: physics, rounds, the firmware's wire behaviour, and a
van's timeline with its faults, checked against values worked out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from coldtrace.contract import TelemetryBatch, probe_fault
from coldtrace.profiles import load_profiles
from coldtrace.settings import load_settings
from simulators import routes, scenario, thermal
from simulators.firmware import Firmware
from simulators.model import VanRun, VanSpec, simulate
from tests.conftest import run_coldtrace

PROFILES = load_profiles()
EPOCH = 1_780_000_000_000  # the wall-clock time of t=0
MIN = 60_000


def van(**over: Any) -> VanSpec:
    base: dict[str, Any] = {
        "id": "v1",
        "city": "paris",
        "month": 7,
        "start_hour": 9,
        "compartments": [
            {
                "name": "chiller",
                "profile": "chilled",
                "probes": [{"id": "product"}, {"id": "air", "measures": "air"}],
            }
        ],
        # La Villette to the Gare de Lyon and on to Montparnasse
        "stops": [
            {"name": "A", "lat": 48.8443, "lon": 2.3744, "dwell_min": 10},
            {"name": "B", "lat": 48.8412, "lon": 2.3209, "dwell_min": 10},
        ],
    }
    return VanSpec.model_validate({**base, **over})


def run(spec: VanSpec, seed: int = 1) -> VanRun:
    return simulate(spec, "dev-1", PROFILES, EPOCH, seed)


def payloads(r: VanRun) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in r.messages]


# -- weather and physics ---------------------------------------------------------------------


def test_ambient_follows_the_month_and_the_hour() -> None:
    # Paris in July: mean 21.3 C, half range 5.6 C, warmest at 15:00, coldest at 03:00
    assert thermal.ambient_c("paris", 7, 15.0) == pytest.approx(26.9)
    assert thermal.ambient_c("paris", 7, 3.0) == pytest.approx(15.7)
    assert thermal.ambient_c("lyon", 1, 9.0) == pytest.approx(3.9)  # cos(-pi/2) = 0
    assert thermal.ambient_c("paris", 1, 15.0, offset_c=2.0) == pytest.approx(5.4 + 2.8 + 2.0)


def test_a_failed_unit_lets_the_air_go_to_the_outside_with_the_walls_time_constant() -> None:
    c = thermal.Compartment(setpoint_c=2.0, tau_wall_min=60.0)
    s = thermal.step(c, thermal.State(2.0, 2.0), 3600, thermal.Conditions(20.0, unit_works=False))
    # air: 20 - 18 e^-1 after one time constant (Euler steps of 10 s: within 0.02 C)
    assert s.air_c == pytest.approx(20 - 18 * math.exp(-1), abs=0.02)
    # product (tau 60 min) lags the air: 20 - 18 (1 + 1) e^-1 for two equal time constants
    assert s.product_c == pytest.approx(20 - 36 * math.exp(-1), abs=0.05)


def test_the_thermostat_keeps_the_air_cycling_around_the_set_point() -> None:
    c = thermal.Compartment(setpoint_c=2.0, band_c=1.0)
    s = thermal.State(2.0, 2.0)
    seen = []
    for _ in range(240):  # two hours in 30 s steps
        s = thermal.step(c, s, 30, thermal.Conditions(25.0))
        seen.append(s.air_c)
    assert 0.5 < min(seen) < 1.0 and 3.0 < max(seen) < 3.5  # band +-1 C and the overshoot
    assert 1.5 < s.product_c < 2.5


def test_an_open_door_warms_the_air_by_how_long_it_stays_open() -> None:
    c = thermal.Compartment(setpoint_c=2.0)
    warm = {}
    for minutes in (2, 10):
        s = thermal.step(c, thermal.State(2.0, 2.0), minutes * 60, thermal.Conditions(20.0, True))
        warm[minutes] = s.air_c
    assert 3.0 < warm[2] < warm[10]


def test_setpoints_per_profile() -> None:
    assert thermal.setpoint_for(PROFILES["chilled"]) == (2.0, "cool", 1.0)
    assert thermal.setpoint_for(PROFILES["fresh-fish"]) == (1.0, "cool", 0.5)
    assert thermal.setpoint_for(PROFILES["deep-frozen"]) == (-21.0, "cool", 1.0)
    assert thermal.setpoint_for(PROFILES["hot-meals"]) == (66.0, "heat", 1.0)


# -- rounds ----------------------------------------------------------------------------------


def test_a_round_drives_at_urban_speeds_and_stays_in_the_city() -> None:
    spec = van(stops=[{"name": f"S{i}"} for i in range(6)])
    r = run(spec)
    paris = routes.CITIES["paris"]
    assert r.route.visits[0].place == paris.depot
    assert r.route.visits[0].depart_s == 15 * 60  # loading
    legs = zip(r.route.visits[:-1], r.route.visits[1:], r.route.speeds_kmh, strict=True)
    for prev, visit, kmh in legs:
        assert paris.contains(visit.place.lat, visit.place.lon)
        assert routes.URBAN_KMH[0] <= kmh <= routes.URBAN_KMH[1]
        km = routes.distance_m(prev.place, visit.place) * routes.DETOUR / 1000
        assert visit.arrive_s - prev.depart_s == pytest.approx(km / kmh * 3600, abs=1)
        assert 6 * 60 <= visit.depart_s - visit.arrive_s <= 15 * 60
    assert all(paris.contains(g["lat"], g["lon"]) for p in payloads(r) for g in _fixes(p))


def _fixes(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [x["gps"] for x in payload["readings"] if "gps" in x]


def test_distance_paris_to_lyon() -> None:
    paris, lyon = routes.CITIES["paris"].depot, routes.CITIES["lyon"].depot
    assert routes.distance_m(paris, lyon) == pytest.approx(395_000, rel=0.02)


# -- the firmware's wire behaviour -----------------------------------------------------------


def test_the_box_sends_its_outbox_oldest_first_one_boot_per_batch() -> None:
    box = Firmware("dev-1", EPOCH, batch_max=3)
    for i in range(4):
        box.take(i * MIN, {"product": 3.0}, False, 12.7, None, None)
    box.power_on(5 * MIN)
    for i in range(6, 8):
        box.take(i * MIN, {"product": 3.0}, False, 12.7, None, None)
    sent = box.forward(8 * MIN)
    assert [(m.boot, m.seqs) for m in sent] == [(1, (1, 2, 3)), (1, (4,)), (2, (5, 6))]
    last = json.loads(sent[-1].payload)["readings"]
    # after the reboot: seq goes on, up counts from power-on, the clock is not set
    assert [(x["seq"], x["ts"], x["up"]) for x in last] == [(5, None, MIN), (6, None, 2 * MIN)]
    first = json.loads(sent[0].payload)["readings"][1]
    assert (first["ts"], first["up"]) == (EPOCH + MIN, MIN)
    assert box.outbox == []
    for m in sent:
        TelemetryBatch.model_validate_json(m.payload)


# -- a van's round ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_messages() -> None:
    assert run(van()).messages == run(van()).messages
    assert run(van()).messages != run(van(), seed=2).messages


def test_readings_every_interval_and_at_once_when_the_door_moves() -> None:
    r = run(van())
    stop_a = r.route.stops[0]
    opened = round(stop_a.arrive_s * 1000) + 60_000
    times = [x.t_ms for x in r.readings]
    assert times[:7] == [0, MIN, 2 * MIN, 3 * MIN, 4 * MIN, 5 * MIN, 6 * MIN]  # door shut at 5
    assert opened in times and opened + 3 * MIN in times  # the unloading door, 3 min
    at = {x.t_ms: x for x in r.readings}
    assert at[opened].door and not at[opened + 3 * MIN].door
    # one reading per message while online, sent when taken, ts = wall clock of t
    assert [m.at_ms for m in r.messages] == times
    assert all(x.ts == EPOCH + x.t_ms for x in r.readings)
    assert times[-1] <= r.duration_ms < times[-1] + MIN
    # the firmware's outbox keeps probes in name order
    assert all(list(p["readings"][0]["probes"]) == ["air", "product"] for p in payloads(r))


def test_a_compressor_failure_warms_the_product_out_of_range() -> None:
    ok = run(van())
    failed = run(
        van(faults=[{"kind": "compressor_failure", "compartment": "chiller", "at_min": 20}])
    )
    assert max(x.truth["product"] for x in ok.readings) < 4.0
    before = [x for x in failed.readings if x.t_ms < 20 * MIN]
    assert [x.probes for x in before] == [x.probes for x in ok.readings[: len(before)]]
    warm = next(x for x in failed.readings if x.truth["product"] > 4.0)
    # The product at +2.9 C has 1.1 C to go; the air (tau 60 min) warms from +2 C towards
    # +17 C outside, by about 4 C in 17 min, plus the 3 min of open door at stop A (30 min),
    # and the product follows with its own 60 min: above +4 C some 15-20 min after the failure.
    assert 35 * MIN <= warm.t_ms <= 40 * MIN


def test_door_left_open_at_a_stop() -> None:
    r = run(van(faults=[{"kind": "door_left_open", "stop": 1, "for_min": 14}]))
    opened = round(r.route.stops[0].arrive_s * 1000) + 60_000
    at = {x.t_ms: x for x in r.readings}
    assert at[opened].door and at[opened + 13 * MIN].door  # driving off with it open
    assert not at[opened + 14 * MIN].door


def test_probe_faults_read_as_the_ds18b20_reads_them() -> None:
    r = run(
        van(
            faults=[
                {"kind": "probe_disconnected", "probe": "product", "at_min": 20, "for_min": 20},
                {"kind": "probe_stuck", "probe": "air", "at_min": 30, "for_min": 10},
            ]
        )
    )
    cut = [x.t_ms for x in r.readings if x.probes["product"] == -127.0]
    assert cut[0] == 20 * MIN and cut[-1] < 40 * MIN <= cut[-1] + MIN
    assert all(
        probe_fault(x.probes["product"]) == "disconnected" for x in r.readings if x.t_ms in cut
    )
    stuck = {x.probes["air"] for x in r.readings if 30 * MIN <= x.t_ms < 40 * MIN}
    assert len(stuck) == 1


def test_connectivity_loss_sends_the_backlog_in_batches_when_back() -> None:
    r = run(van(batch_max=10, faults=[{"kind": "offline", "at_min": 20, "for_min": 25}]))
    backlog = [m for m in r.messages if m.kind == "backlog"]
    held = [x.seq for x in r.readings if 20 * MIN <= x.t_ms < 45 * MIN]
    assert len(held) == 26  # 25 min of readings, and the door of stop A opening and closing
    assert [len(m.seqs) for m in backlog] == [10, 10, 6]
    assert [s for m in backlog for s in m.seqs] == held
    assert {m.at_ms for m in backlog} == {45 * MIN}
    seqs = [s for m in r.messages for s in m.seqs]
    assert seqs == sorted(seqs) == [x.seq for x in r.readings]  # nothing lost or repeated


def test_reboot_with_an_unsynced_clock() -> None:
    r = run(van(faults=[{"kind": "reboot", "at_min": 30, "off_min": 4.5, "unsynced_min": 6}]))
    after = [x for x in r.readings if x.t_ms > 30 * MIN]
    back = 34.5 * MIN
    assert after[0].t_ms == back + 2_000  # power-on, then the first reading
    assert all(x.boot == 2 for x in after)
    assert after[0].probes == {"air": 85.0, "product": 85.0}  # before the first conversion
    unsynced = [x for x in after if x.ts is None]
    assert unsynced and all(x.t_ms < back + 6 * MIN for x in unsynced)
    assert all(x.ts == EPOCH + x.t_ms for x in after if x.ts is not None)
    # nothing sampled while the power was off, and seqs continue without a gap
    assert not [x for x in r.readings if 30 * MIN < x.t_ms < back]
    assert [x.seq for x in r.readings] == list(range(1, len(r.readings) + 1))
    for p in payloads(r):
        for x in p["readings"]:
            if x["ts"] is None:
                assert p["boot"] == 2 and "gps" not in x


def test_clock_skew_duplicates_replays_and_probe_order() -> None:
    r = run(
        van(
            cabin_probe="cab",
            probe_order="shuffled",
            faults=[
                {"kind": "clock_skew", "at_min": 10, "skew_s": 90},
                {"kind": "duplicate", "every": 7},
                {"kind": "replay", "at_min": 50, "from_min": 5, "to_min": 15},
            ],
        )
    )
    assert all(x.ts == EPOCH + x.t_ms + (90_000 if x.t_ms >= 10 * MIN else 0) for x in r.readings)
    live = [m for m in r.messages if m.kind == "live"]
    dups = [m for m in r.messages if m.kind == "duplicate"]
    assert len(dups) == len(live) // 7
    replayed = [m for m in r.messages if m.kind == "replay"]
    assert [m.seqs for m in replayed] == [m.seqs for m in live if 5 * MIN <= m.at_ms < 15 * MIN]
    assert all(m.at_ms == 50 * MIN for m in replayed)
    orders = {tuple(p["readings"][0]["probes"]) for p in payloads(r)}
    assert len(orders) > 1 and all(set(o) == {"air", "product", "cab"} for o in orders)


# -- scenarios -------------------------------------------------------------------------------


def test_every_scenario_loads_and_ends_before_now() -> None:
    now = 1_790_000_000_000
    for name in scenario.names():
        placed = scenario.place(scenario.load(name), "p", PROFILES, now, 3600_000)
        assert placed.epoch_ms + placed.duration_ms <= now - MIN
        for run in placed.runs.values():
            assert all(x.ts is None or x.ts < now for x in run.readings)


def test_a_delivery_closed_before_its_last_readings_was_delivered_a_grace_period_ago() -> None:
    now = 1_790_000_000_000
    placed = scenario.place(scenario.load("tunnel-backlog"), "p", PROFILES, now, 3600_000)
    [d] = placed.deliveries
    assert d.deliver_ms <= now - 3600_000 - MIN
    assert d.close_at == 90 * MIN


def test_the_settings_a_scenario_needs(clean_env: None) -> None:
    placed = scenario.place(scenario.load("defrost-suppressed"), "p", PROFILES, EPOCH, 0, EPOCH)
    now = EPOCH + 3 * 3600_000
    need = scenario.missing_settings(placed, load_settings(), now)
    assert json.loads(need["COLDTRACE_ALERTS_SUPPRESS_WINDOWS"]) == {
        "p-van-d": [["2026-05-28T21:09:40Z", "2026-05-28T21:38:40Z"]]  # t+43 .. t+72
    }
    # its readings are up to 3 hours old when they arrive: no box is silent before 4 hours
    assert need["COLDTRACE_ALERTS_SILENT_AFTER_S"] == str(4 * 3600)
    given = load_settings(
        alerts_suppress_windows=json.loads(need["COLDTRACE_ALERTS_SUPPRESS_WINDOWS"]),
        alerts_silent_after_s=4 * 3600,
    )
    assert scenario.missing_settings(placed, given, now) == {}


def test_a_scenario_with_an_error_says_where() -> None:
    with pytest.raises(scenario.ScenarioError, match="no scenario 'nope'; known: blip-under"):
        scenario.load("nope")
    bad = scenario.SCENARIOS_DIR / "compressor-failure.yaml"
    text = bad.read_text().replace("stop: 3}", "stop: 9}")
    with pytest.raises(ValueError, match="delivery CH-1: van van-a has no stop 9"):
        scenario.Scenario.model_validate(yaml.safe_load(text))
    text = bad.read_text().replace("stop: 3}", "stop: 3, lifecycle: gps, close_min: 80}")
    with pytest.raises(ValueError, match="GPS-detected delivery is closed once every reading"):
        scenario.Scenario.model_validate(yaml.safe_load(text))


def test_simulate_scenario_says_what_it_needs_in_one_line(tmp_path: Path) -> None:
    run_dir = str(tmp_path)
    no_key = run_coldtrace("simulate", "--scenario", "blip-under-delay", COLDTRACE_RUN_DIR=run_dir)
    assert no_key.returncode == 2
    assert no_key.stderr.strip().endswith("(`coldtrace keys create --role admin`)")
    unknown = run_coldtrace(
        "simulate", "--scenario", "nope", "--api-key", "k", COLDTRACE_RUN_DIR=run_dir
    )
    assert (unknown.returncode, unknown.stderr.count("\n")) == (2, 1)
    assert "no scenario 'nope'" in unknown.stderr
    door = run_coldtrace(
        "simulate",
        "--scenario",
        "door-left-open",
        "--api-key",
        "k",
        "--prefix",
        "x",
        COLDTRACE_RUN_DIR=run_dir,
    )
    assert (door.returncode, door.stderr.count("\n")) == (2, 1)
    assert 'COLDTRACE_ALERTS_DEVICE_PROFILES=\'{"x-van-b": "chilled"}\'' in door.stderr
    assert "--prefix x --start " in door.stderr
