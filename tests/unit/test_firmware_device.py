"""The firmware's sensors, clock, config and watchdog on the real MicroPython interpreter,
with fake ESP32 hardware (coldtrace/devtools/fake_esp32)."""

from __future__ import annotations

import calendar
import json
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from coldtrace.contract import TelemetryBatch, probe_fault
from coldtrace.devtools.board import Board, run
from tests.conftest import NMEA_FIXTURE

AIR, PRODUCT, SPARE = "28aa000000000001", "28aa000000000002", "28aa0000000000ff"


def flash_with(tmp_path: Path, config: dict[str, Any]) -> Path:
    """A board's flash holding config.json: a tethered box of van-1 unless told otherwise."""
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text(json.dumps({"device": "van-1", "uplink": "uart", **config}))
    return flash


def test_probe_faults_are_flagged_as_ingest_flags_them(tmp_path: Path) -> None:
    values = [-127.0, 85.0, 3.5, None, 120.0, -80.0, 100.0, 84.9]
    code = f"""
import json
from sensors import probe_fault
print(json.dumps([probe_fault(v) for v in {values!r}]))
"""
    assert run(code, tmp_path / "flash") == [probe_fault(v) for v in values]
    assert run(code, tmp_path / "flash")[:2] == ["disconnected", "power_on_value"]


def test_ds18b20_probes_by_name_with_missing_and_crc_failures(tmp_path: Path) -> None:
    code = f"""
import asyncio, json
from sensors import Probes
named = Probes(4, {{"{AIR}": "air", "{PRODUCT}": "product", "28aa000000000003": "door_side"}}, 1)
anonymous = Probes(4, {{}}, 1)
async def go():
    return [await named.read(), await named.read(), named.crc_errors, await anonymous.read()]
print(json.dumps(asyncio.run(go())))
"""
    world = {"probes": {AIR: [3.5, -127.0], PRODUCT: ["crc", 2.25], SPARE: 1.0}}
    first, second, crc_errors, anonymous = run(code, tmp_path / "flash", world)
    assert first == {"air": 3.5, "product": None, "door_side": None}
    assert second == {"air": -127.0, "product": 2.25, "door_side": None}
    assert crc_errors == 1
    assert anonymous == {AIR: 3.5, PRODUCT: None, SPARE: 1.0}, "every probe found, by ROM"


@pytest.mark.parametrize(
    ("model", "bad_crc", "expected"), [("sht4x", False, 4.2), ("sht3x", True, None)]
)
def test_sht_air_sensor_checks_its_crc(
    tmp_path: Path, model: str, bad_crc: bool, expected: float | None
) -> None:
    code = f"""
import asyncio, json, machine
from sht import Sht
sht = Sht(machine.I2C(0), "{model}")
print(json.dumps([asyncio.run(sht.read()), sht.crc_errors]))
"""
    value, errors = run(code, tmp_path / "flash", {"sht_c": 4.2, "sht_bad_crc": bad_crc})
    assert value == expected
    assert errors == (1 if bad_crc else 0)


def test_door_is_debounced_and_interrupt_driven(tmp_path: Path) -> None:
    code = """
import json, time
from machine import PINS
from sensors import Door
door = Door(27, debounce_ms=50)
seen = [door.open]
for level in (1, 0, 1):  # the reed switch bounces as the door opens
    PINS[27].drive(level)
    time.sleep_ms(5)
seen.append(door.poll())
time.sleep_ms(60)
seen += [door.poll(), door.open, door.poll()]
print(json.dumps(seen))
"""
    assert run(code, tmp_path / "flash") == [False, False, True, True, False]


def test_uptime_runs_on_across_the_ticks_wrap_around(tmp_path: Path) -> None:
    code = """
import json, time
from clock import Uptime
start = time.ticks_add(0, -1500)  # 1.5 s before ticks_ms() wraps to 0
ticks = [start] + [time.ticks_add(start, ms) for ms in (1000, 3000, 7000)]
up = Uptime(lambda: ticks.pop(0))
print(json.dumps([up.ms(), up.ms(), up.ms(), ticks]))
"""
    assert run(code, tmp_path / "flash") == [1000, 3000, 7000, []]


def test_clock_is_unknown_until_a_source_sets_it(tmp_path: Path) -> None:
    code = """
import json
from clock import Clock, Uptime, ntp_sync
clock = Clock(Uptime())
out = [clock.now_ms(), ntp_sync(clock), clock.set(1546300800000, "gps"), clock.now_ms()]
print(json.dumps(out))
"""
    assert run(code, tmp_path / "flash", {"ntp_after_ms": None}) == [None, False, False, None]
    code = """
import json
from clock import Clock, Uptime, ntp_sync
clock = Clock(Uptime())
print(json.dumps([ntp_sync(clock), clock.source, clock.now_ms()]))
"""
    synced, source, now = run(code, tmp_path / "flash", {"ntp_after_ms": 0})
    assert synced and source == "ntp"
    assert abs(now - time.time() * 1000) < 5000


def test_config_from_the_server_is_checked(tmp_path: Path) -> None:
    messages = [
        {"interval_ms": 30000, "limits": {"product": [0, 4]}, "unknown": 1},
        {"interval_ms": "fast"},
        {"limits": {"product": [4, 0]}},
        {"batch_max": 5000},
        [1, 2],
    ]
    code = f"""
import json, config
out = []
for m in {[json.dumps(m) for m in messages]!r}:
    try:
        out.append(config.remote_update(m))
    except ValueError as e:
        out.append(str(e))
print(json.dumps(out))
"""
    out = run(code, tmp_path / "flash")
    assert out[0] == {"interval_ms": 30000, "limits": {"product": [0, 4]}}
    assert "interval_ms" in out[1] and "limits.product" in out[2]
    assert out[3] == {"batch_max": 500}, "capped at the contract's batch limit"
    assert "not a JSON object" in out[4]


@pytest.mark.parametrize(
    ("uplink", "sht", "loaded", "not_loaded"),
    [
        ("wifi", None, ["uplink", "umqtt.simple"], ["config", "tether", "sht"]),
        ("uart", "sht4x", ["tether", "sht"], ["config", "uplink", "umqtt.simple"]),
    ],
)
def test_a_box_holds_only_the_code_its_config_uses(
    tmp_path: Path, uplink: str, sht: str | None, loaded: list[str], not_loaded: list[str]
) -> None:
    """RAM is the box's scarcest resource: the config module goes after boot, and the uplink
    and the air sensor are imported only when configured (and then work)."""
    config = {
        "uplink": uplink,
        "sht": sht,
        "wifi": {"ssid": "depot"},
        "mqtt": {"host": "127.0.0.1", "password": "pw"},
        "ds18b20_conversion_ms": 1,
        "probes": {PRODUCT: "product"},
    }
    flash = flash_with(tmp_path, config)
    code = """
import asyncio, json, sys, app
d = app.Device(app.load_config())
reading = asyncio.run(d.measure())
print(json.dumps([sorted(sys.modules), reading["probes"]]))
"""
    modules, probes = run(code, flash, {"probes": {PRODUCT: 2.5}, "sht_c": 4.2})
    assert set(loaded) <= set(modules)
    assert not set(not_loaded) & set(modules)
    assert probes == ({"product": 2.5, "air": 4.2} if sht else {"product": 2.5})


def test_samples_keep_the_configured_interval_however_long_a_measurement_takes(
    tmp_path: Path,
) -> None:
    """The interval is from sample to sample: the DS18B20's conversion (750 ms at 12 bits)
    must not stretch a 60 s interval into 60.75 s, a reading fewer every 80 minutes."""
    config = {"interval_ms": 300, "ds18b20_conversion_ms": 200, "probes": {PRODUCT: "product"}}
    flash = flash_with(tmp_path, config)
    code = """
import asyncio, json, app
d = app.Device(app.load_config())
async def go():
    task = asyncio.create_task(d.sampler())
    await asyncio.sleep_ms(3000)
    task.cancel()
asyncio.run(go())
print(json.dumps([r["up"] for r in d.outbox.take(100)[1]]))
"""
    ups = run(code, flash, {"probes": {PRODUCT: 2.5}})
    gaps = sorted(b - a for a, b in pairwise(ups))
    assert len(gaps) >= 4, ups
    assert 270 <= gaps[len(gaps) // 2] < 400, f"median gap of {gaps}, interval 300 ms"


def test_a_config_without_device_id_or_broker_fails_with_what_to_do(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text("{}")
    code = """
import json, config
try:
    config.load()
except ValueError as e:
    print(json.dumps(str(e)))
"""
    assert 'set "device"' in run(code, flash)
    (flash / "config.json").write_text('{"device": "van-1", "wifi": {"ssid": "depot"}}')
    assert "set mqtt.host" in run(code, flash)
    tls = {"host": "mqtt.example.net", "password": "pw", "tls": True}
    (flash / "config.json").write_text(
        json.dumps({"device": "van-1", "wifi": {"ssid": "depot"}, "mqtt": tls})
    )
    assert "TLS needs mqtt.ca_file" in run(code, flash)


DEVICE = """
import asyncio, json, time, machine, config, app
d = app.Device(config.load())
healthy_now = d.healthy()
d._sampled_at = time.ticks_add(time.ticks_ms(), -10 * d.cfg["interval_ms"])
stale = d.healthy()
async def go():
    task = asyncio.create_task(d.watchdog())
    await asyncio.sleep_ms(2500)
    task.cancel()
asyncio.run(go())
print(json.dumps([healthy_now, stale, machine.WDT.feeds, app.in_alarm(
    {"air": 5.0, "product": -127.0, "spare": 9.0}, {"air": [0, 4], "product": [0, 4]})]))
"""


def test_watchdog_is_fed_only_while_the_loop_is_healthy(tmp_path: Path) -> None:
    flash = flash_with(tmp_path, {"interval_ms": 1000})
    healthy, stale, feeds, alarm = run(DEVICE, flash)
    assert healthy and not stale
    assert feeds == 0, "a stalled sampler starves the watchdog, which then resets the board"
    assert sorted(alarm) == ["air", "product"]


def test_tethered_mode_writes_contract_batches_as_json_lines(tmp_path: Path) -> None:
    tx = tmp_path / "uart1.jsonl"
    config: dict[str, Any] = {
        "device": "van-7",
        "uplink": "uart",
        "interval_ms": 100,
        "ds18b20_conversion_ms": 10,
        "probes": {AIR: "air"},
    }
    board = Board(tmp_path / "flash", config, {"probes": {AIR: 3.5}, "uart_tx": {"1": str(tx)}})
    board.start()
    try:
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and len(tx.read_bytes().splitlines() if tx.exists() else []) < 5
        ):
            time.sleep(0.1)
    finally:
        board.kill()
    lines = tx.read_bytes().splitlines()
    assert len(lines) >= 5, board.logtext()
    batches = [TelemetryBatch.model_validate_json(line) for line in lines]
    seqs = [r.seq for b in batches for r in b.readings]
    assert seqs == list(range(len(seqs)))
    assert {b.device for b in batches} == {"van-7"}
    assert all(r.probes == {"air": 3.5} and r.ts is None for b in batches for r in b.readings)


def run_on_gps(tmp_path: Path, nmea: Path, product_c: float, run_ms: int, report: str) -> Any:
    """The device's inputs and sampler for `run_ms` (ms) with one product probe at
    `product_c` (limits 0..+4 C) read every 100 ms, `nmea` played on the GNSS UART at
    20,000 B/s and no NTP; `report`: the MicroPython list printed as JSON afterwards (``d``
    the device, ``readings`` what its outbox holds, ``PINS`` the board's pins)."""
    config = {
        "interval_ms": 100,
        "ds18b20_conversion_ms": 1,
        "probes": {PRODUCT: "product"},
        "limits": {"product": [0, 4]},
    }
    world = {
        "probes": {PRODUCT: product_c},
        "nmea": str(nmea),
        "nmea_bytes_per_s": 20000,  # a whole drive in half a second, in arbitrary chunks
        "ntp_after_ms": None,
    }
    code = f"""
import asyncio, json, app, config
from machine import PINS
d = app.Device(config.load())
async def go():
    tasks = [asyncio.create_task(d.inputs()), asyncio.create_task(d.sampler())]
    await asyncio.sleep_ms({run_ms})
    for t in tasks:
        t.cancel()
asyncio.run(go())
boot, readings, _ = d.outbox.take(100)
print(json.dumps({report}))
"""
    return run(code, flash_with(tmp_path, config), world)


def test_gps_sets_the_clock_without_ntp_and_the_led_shows_an_excursion(tmp_path: Path) -> None:
    source, rejected, led, last = run_on_gps(
        tmp_path,
        NMEA_FIXTURE,
        6.5,
        1500,
        "[d.clock.source, d.gps.rejected, PINS[2].value(), readings[-1]]",
    )
    assert source == "gps"
    assert rejected == 3, "sentences split across UART reads are put back together"
    assert led == 1, "product at 6.5 C is above its 4 C limit"
    drive = (calendar.timegm((2026, 7, 14, 23, 59, 33)), calendar.timegm((2026, 7, 15, 0, 1, 0)))
    assert drive[0] * 1000 <= last["ts"] <= drive[1] * 1000
    assert last["gps"]["lat"] > 48.7 and last["probes"] == {"product": 6.5}


def test_a_door_opening_is_sampled_at_once(tmp_path: Path) -> None:
    flash = flash_with(tmp_path, {"interval_ms": 60000, "ds18b20_conversion_ms": 1})
    code = """
import asyncio, json, time, app, config
from machine import PINS
d = app.Device(config.load())
async def go():
    tasks = [asyncio.create_task(d.inputs()), asyncio.create_task(d.sampler())]
    await asyncio.sleep_ms(200)
    PINS[27].drive(1)
    opened = time.ticks_ms()
    while d.outbox.pending < 2 and time.ticks_diff(time.ticks_ms(), opened) < 2000:
        await asyncio.sleep_ms(10)
    for t in tasks:
        t.cancel()
    return time.ticks_diff(time.ticks_ms(), opened)
took = asyncio.run(go())
print(json.dumps([took, [r["door"] for r in d.outbox.take(10)[1]]]))
"""
    took, doors = run(code, flash, {})
    assert doors == [False, True]
    assert took < 1000, "sampled within the debounce and a poll, not the 60 s interval"
