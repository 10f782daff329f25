"""Simulator/devices -> real Mosquitto -> ingest process -> real InfluxDB, with exact counts."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from coldtrace.devtools.services import LocalServices, device_password
from coldtrace.influx import InfluxClient, quote_string
from coldtrace.settings import Settings
from ingest import lock
from ingest.held import HeldReadings
from ingest.report import landed
from simulators.fleet import batches, make_fleet
from simulators.publish import simulate
from tests.conftest import (
    Devices,
    rejections,
    run_coldtrace,
    stored_count,
    stored_seqs,
    wait_for,
)

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z


UNSET: Any = object()


def reading(
    seq: int, ts: int | None = UNSET, up: int | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": T0 + seq * 1000 if ts is UNSET else ts,
        "up": seq * 1000 if up is None else up,
        "probes": {"air": 3.5, "product": 2.5},
        **extra,
    }


def payload(device: str, readings: list[dict[str, Any]], boot: int = 1, **extra: Any) -> bytes:
    return json.dumps({"device": device, "boot": boot, "readings": readings, **extra}).encode()


def fleet_payloads(prefix: str, vans: int, per_van: int, per_batch: int) -> dict[str, list[bytes]]:
    out = {}
    for van in make_fleet(vans, seed=7, prefix=prefix):
        out[van.device] = [
            b.model_dump_json(exclude_defaults=True).encode()
            for b in batches(van, T0, per_van, 1.0, per_batch)
        ]
    return out


def test_simulated_fleet_is_stored_exactly_once_with_duplicates_and_replay(
    settings: Settings, influx: InfluxClient, start_ingest, devices: Devices, prefix: str
) -> None:
    ingest = start_ingest()
    LocalServices(settings).register_devices(f"{prefix}-{i:02d}" for i in (1, 2, 3))
    tallies = simulate(
        settings,
        partial(device_password, settings),
        vehicles=3,
        readings=40,
        speedup=0,
        per_batch=4,
        prefix=prefix,
    )
    assert [(t.sent, t.acked, t.pending) for t in tallies] == [(40, 40, 0)] * 3
    assert stored_count(influx, f"^{prefix}") == 120  # acknowledged: stored

    # MQTT redelivery and a gateway replaying its spool: the same batches again, twice.
    replay = fleet_payloads(prefix + "r", 2, 30, 5)
    for device, payloads in replay.items():
        devices.publish(device, payloads)
        devices.publish(device, payloads[:2])  # a duplicate of the first two messages
        devices.publish(device, payloads)  # the whole spool replayed
    wait_for(lambda: stored_count(influx, f"^{prefix}r") == 60, what="60 replayed readings")
    wait_for(lambda: ingest.metrics().get("coldtrace_ingest_duplicates_total", 0) >= 2 * 40)

    time.sleep(0.5)  # anything double-counted would have landed by now
    assert stored_count(influx, f"^{prefix}") == 120 + 60
    for device in replay:
        assert stored_seqs(influx, device) == list(range(1, 31))
        assert rejections(influx, device) == []
    totals = ingest.metrics()
    assert totals["coldtrace_ingest_duplicates_total"] == 2 * (10 + 30)
    # received = stored + duplicates + rejected (+ held, none here)
    assert totals["coldtrace_ingest_stored_total"] == 180
    assert "coldtrace_ingest_rejected_total" not in totals


def test_a_simulator_run_of_fewer_vans_keeps_the_other_vans_state(
    settings: Settings, influx: InfluxClient, start_ingest, prefix: str, tmp_path: Path
) -> None:
    """A demo-like run of three vans, one of a single van (`coldtrace simulate --vehicles 1`),
    then three again: vans 2 and 3 carry on (next boot, seqs continuing), none restarts at
    seq 1 to be rejected as a conflicting duplicate."""
    start_ingest()
    LocalServices(settings).register_devices(f"{prefix}-{i:02d}" for i in (1, 2, 3))
    run = partial(
        simulate,
        settings,
        partial(device_password, settings),
        readings=10,
        speedup=0,
        per_batch=2,
        prefix=prefix,
        state_file=tmp_path / "simulator-state.json",
    )
    acked: Counter[str] = Counter()
    for vehicles in (3, 1, 3):
        for t in run(vehicles=vehicles):
            assert (t.carried, t.pending) == (0, 0)
            acked[t.device] += t.acked
    assert acked == Counter({f"{prefix}-01": 30, f"{prefix}-02": 20, f"{prefix}-03": 20})
    assert stored_count(influx, f"^{prefix}") == 70
    assert influx.rows(f"SELECT * FROM rejected WHERE device =~ /^{prefix}/") == []
    assert stored_seqs(influx, f"{prefix}-02") == list(range(1, 21))


def test_sigkill_with_messages_in_flight_loses_nothing_and_stores_once(
    influx: InfluxClient, start_ingest, devices: Devices, prefix: str
) -> None:
    payloads = fleet_payloads(prefix, 2, 2000, 10)  # 2 x 200 messages, 4,000 readings
    # A long batch delay keeps received messages un-acked in ingest for a while.
    ingest = start_ingest(
        COLDTRACE_INGEST_BATCH_DELAY_MS="1500", COLDTRACE_INGEST_BATCH_MESSAGES="1000"
    )
    for device, msgs in payloads.items():
        devices.publish(device, msgs[:50])
    wait_for(lambda: stored_count(influx, f"^{prefix}") == 1000, what="the first 1,000")
    for device, msgs in payloads.items():
        devices.publish(device, msgs[50:100])  # received by ingest, waiting for its batch
    received = lambda: ingest.metrics()["coldtrace_ingest_received_messages_total"]  # noqa: E731
    wait_for(lambda: received() >= 200, 5, "the next 100 messages to reach ingest")
    ingest.stop(signal.SIGKILL)
    assert stored_count(influx, f"^{prefix}") == 1000  # the in-flight ones were not stored
    for device, msgs in payloads.items():
        devices.publish(device, msgs[100:])  # while ingest is down
    ingest.start()
    wait_for(lambda: stored_count(influx, f"^{prefix}") == 4000, 60, "all 4,000 readings")
    for device in payloads:
        assert stored_seqs(influx, device) == list(range(1, 2001))
    assert influx.rows(f"SELECT * FROM seq_gap WHERE device =~ /^{prefix}/") == []


def test_influxdb_outage_nothing_acked_before_stored(
    settings: Settings,
    services: LocalServices,
    influx: InfluxClient,
    start_ingest,
    devices: Devices,
    prefix: str,
) -> None:
    device = f"{prefix}-01"
    msgs = fleet_payloads(prefix, 1, 600, 10)[device]  # 60 messages
    ingest = start_ingest(COLDTRACE_INGEST_UNHEALTHY_AFTER_S="1")
    devices.publish(device, msgs[:20])
    wait_for(lambda: stored_count(influx, f"^{prefix}") == 200, what="first 200 readings")
    services.stop("influxdb")
    try:
        devices.publish(device, msgs[20:40])  # the broker PUBACKs; ingest cannot store them
        _, body = wait_for(lambda: (h := ingest.health())[0] == 503 and h, 20, "/health to fail")
        assert body["influx_writable"] is False and body["mqtt_connected"] is True
        # Were anything acked before it was stored, killing ingest now would lose it.
        ingest.stop(signal.SIGKILL)
        devices.publish(device, msgs[40:])
    finally:
        services.start("influxdb")
    ingest.start()
    wait_for(lambda: stored_count(influx, f"^{prefix}") == 600, 60, "all 600 readings")
    assert stored_seqs(influx, device) == list(range(1, 601))
    assert ingest.health()[0] == 200


def test_burst_while_ingest_is_away_is_kept_by_the_broker(
    influx: InfluxClient, start_ingest, devices: Devices, prefix: str
) -> None:
    """Mosquitto's default queue (1,000 messages) kept only ~1,020 of such a burst."""
    device = f"{prefix}-01"
    msgs = fleet_payloads(prefix, 1, 3000, 1)[device]
    ingest = start_ingest()
    ingest.stop()  # the persistent session stays on the broker
    devices.publish(device, msgs)
    ingest.start()
    wait_for(lambda: stored_count(influx, f"^{prefix}") == 3000, 90, "all 3,000 messages")
    assert influx.rows(f"SELECT * FROM seq_gap WHERE device = {quote_string(device)}") == []


def test_seq_gaps_are_reported_and_the_count_identity_holds(
    influx: InfluxClient, start_ingest, devices: Devices, prefix: str
) -> None:
    device = f"{prefix}-01"
    ingest = start_ingest()
    devices.publish(device, [payload(device, [reading(s) for s in range(1, 11)])])
    devices.publish(device, [payload(device, [reading(s) for s in range(21, 31)])])
    wait_for(lambda: stored_count(influx, device) == 20)
    gap = influx.rows(f"SELECT * FROM seq_gap WHERE device = {quote_string(device)}")
    assert [(g["source"], g["first"], g["last"], g["missing"]) for g in gap] == [
        ("ingest", 11, 20, 10)
    ]
    assert "seqs 11..20 missing" in ingest.logtext()

    # Five of the missing readings arrive late; the device then reports it dropped 31..40.
    devices.publish(device, [payload(device, [reading(s) for s in range(11, 16)])])
    devices.publish(
        device,
        [payload(device, [reading(s) for s in range(41, 51)], dropped=[{"from": 31, "to": 40}])],
    )
    wait_for(lambda: stored_count(influx, device) == 35)
    gaps = influx.rows(f"SELECT * FROM seq_gap WHERE device = {quote_string(device)}")
    by_source = {g["source"]: (g["first"], g["last"], g["missing"]) for g in gaps}
    assert by_source == {"ingest": (11, 20, 5), "device": (31, 40, 10)}
    # The device generated seqs 1..50: stored + rejected + reported gaps accounts for all.
    missing = sum(g["missing"] for g in gaps)
    assert stored_count(influx, device) + len(rejections(influx, device)) + missing == 50

    # A tampered replay of seq 5: dead-lettered, a refused copy of a stored seq, not a
    # reading sent; the demo's report (ingest/report.py) has the same books.
    devices.publish(device, [payload(device, [reading(5, probes={"air": -30.0})])])
    wait_for(lambda: rejections(influx, device), what="the dead letter")
    b = landed(influx, HeldReadings(ingest.env["COLDTRACE_DATABASE_URL"]), [device])[device].books
    assert (b.sent, b.stored, b.held, b.rejected, b.missing, b.copies) == (50, 35, 0, 0, 15, 1)
    assert (b.dropped, b.agrees) == (10, True)


def test_unsynced_clock_readings_are_held_then_placed_even_across_a_restart(
    influx: InfluxClient, start_ingest, devices: Devices, prefix: str
) -> None:
    device = f"{prefix}-01"
    ingest = start_ingest()
    # Boot 3, no clock yet: up = 5 s, 65 s, 125 s after boot.
    unsynced = [reading(s, ts=None, up=5_000 + 60_000 * (s - 1)) for s in (1, 2, 3)]
    devices.publish(device, [payload(device, unsynced, boot=3)])
    wait_for(lambda: ingest.metrics().get("coldtrace_ingest_held_total") == 3)
    assert stored_count(influx, device) == 0  # held, not stored with an invented time

    ingest.stop()
    ingest.start()  # the held readings are on disk, not in memory
    synced = reading(4, ts=T0, up=185_000)  # the clock is set at up = 185 s
    devices.publish(device, [payload(device, [synced], boot=3)])
    wait_for(lambda: stored_count(influx, device) == 4)
    rows = influx.rows(
        f"SELECT seq, derived FROM device_health WHERE device = {quote_string(device)}"
    )
    assert [(r["time"], r["seq"], r["derived"]) for r in rows] == [
        (T0 - 180_000, 1, True),
        (T0 - 120_000, 2, True),
        (T0 - 60_000, 3, True),
        (T0, 4, None),
    ]


def test_broker_confines_each_device_to_its_own_topics(
    settings: Settings, influx: InfluxClient, start_ingest, devices: Devices, prefix: str
) -> None:
    mallory, victim = f"{prefix}-mallory", f"{prefix}-victim"
    start_ingest()
    devices(victim)
    # Mallory publishes as the victim on the victim's topic: the broker ACL drops it.
    devices.publish(
        mallory, [payload(victim, [reading(1)])], topic=f"coldtrace/v1/{victim}/telemetry"
    )
    devices.publish(mallory, [payload(mallory, [reading(1)])])  # a marker behind it
    wait_for(lambda: stored_count(influx, mallory) == 1)
    time.sleep(0.3)
    assert stored_count(influx, victim) == 0

    for username, password in [(None, None), (victim, "wrong-password")]:
        assert _connack(settings, username, password).is_failure, f"{username} was let in"


def _connack(settings: Settings, username: str | None, password: str | None) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{username}")
    if username:
        client.username_pw_set(username, password)
    result: list[Any] = []
    client.on_connect = lambda c, u, f, rc, p: result.append(rc)
    client.connect("127.0.0.1", settings.mqtt_port)
    client.loop_start()
    wait_for(lambda: result, 10, "CONNACK")
    client.loop_stop()
    return result[0]


def test_health_and_metrics_report_the_running_ingest(
    start_ingest, devices: Devices, prefix: str
) -> None:
    ingest = start_ingest()
    status, body = ingest.health()
    assert status == 200
    assert body["mqtt_connected"] and body["writer_alive"] and body["influx_writable"]
    devices.publish(f"{prefix}-01", [payload(f"{prefix}-01", [reading(1), reading(2)])])
    wait_for(lambda: ingest.metrics().get("coldtrace_ingest_stored_total") == 2)
    assert ingest.metrics()["coldtrace_ingest_up"] == 1
    assert httpx.get(f"http://127.0.0.1:{ingest.health_port}/nope").status_code == 404


def test_a_normal_stop_logs_no_warning(start_ingest, devices: Devices, prefix: str) -> None:
    """SIGTERM is how ingest is stopped (systemd, the demo): it logged the MQTT disconnect
    it asked for as a WARNING, as if the broker had gone away."""
    ingest = start_ingest()
    devices.publish(f"{prefix}-01", [payload(f"{prefix}-01", [reading(1)])])
    wait_for(lambda: ingest.metrics().get("coldtrace_ingest_stored_total") == 1)
    before = ingest.log.read_text()
    assert ingest.stop(signal.SIGTERM) == 0
    said = ingest.log.read_text().removeprefix(before).splitlines()
    # "2026-12-01 06:40:00,123 LEVEL logger message"
    assert [line.split()[2] for line in said if line[:2] == "20"] == ["INFO"] * len(said)
    assert said[0].endswith(" ingest.service signal 15: stopping after the current batch")
    assert " ingest.service ingest stopped; totals: {" in said[-1]


def test_a_second_ingest_on_the_same_session_says_so_and_leaves_the_first_running(
    settings: Settings, influx: InfluxClient, start_ingest, devices: Devices, prefix: str
) -> None:
    """Two real processes: the second `coldtrace ingest` (same run dir, same client id) exits
    2 with one line before it connects; the first keeps its session and goes on storing."""
    first = start_ingest()
    own = {k: v for k, v in first.env.items() if k.startswith("COLDTRACE_")}
    second = run_coldtrace("ingest", **own)
    assert (second.returncode, second.stdout) == (2, "")
    assert second.stderr == (
        f"error: ingest already running (pid {first.pid}): stop it first (kill {first.pid})\n"
    )
    assert first.health()[0] == 200
    device = f"{prefix}-01"
    devices.publish(device, [payload(device, [reading(1), reading(2)])])
    wait_for(lambda: stored_count(influx, device) == 2, what="2 readings stored by the first")
    # What the demo asks before it starts its own; once the first has stopped, the lock is
    # free again (never stale).
    assert lock.holder(settings) == first.pid
    first.stop()
    assert lock.holder(settings) is None


def test_conflicts_are_caught_after_an_ingest_restart(
    influx: InfluxClient, start_ingest, devices: Devices, prefix: str
) -> None:
    """The dedup memory is rebuilt from InfluxDB: a fresh ingest process (new client id,
    empty memory) still tells an identical repeat from a conflicting one."""
    device = f"{prefix}-01"
    first = start_ingest()
    devices.publish(device, [payload(device, [reading(1), reading(2)])])
    wait_for(lambda: stored_count(influx, device) == 2)
    first.stop()
    second = start_ingest()
    tampered = payload(device, [reading(2, probes={"air": -30.0})])
    devices.publish(device, [payload(device, [reading(1)]), tampered])
    dead = wait_for(lambda: rejections(influx, device))
    assert [(d["reason"], d["seq"]) for d in dead] == [("conflicting_duplicate", 2)]
    assert second.metrics()["coldtrace_ingest_duplicates_total"] == 1


def test_points_influxdb_refuses_are_dead_lettered_message_by_message(
    settings: Settings, start_ingest, devices: Devices, prefix: str
) -> None:
    """Schema drift: someone wrote `boot` as a string. InfluxDB 1.x keeps one type per field
    and measurement (per shard), so it refuses every device's points in that shard: each
    message is then dead-lettered on its own, with InfluxDB's reason, and ingest goes on."""
    database = f"drift_{prefix}"  # its own database: the drift would break other tests
    influx = InfluxClient(settings.model_copy(update={"influx_database": database}))
    influx.create_database()
    influx.write(f'device_health,device={prefix}-other boot="one" {T0 - 1000}'.encode())
    ingest = start_ingest(COLDTRACE_INFLUX_DATABASE=database, COLDTRACE_INGEST_BATCH_DELAY_MS="300")
    first, second = f"{prefix}-01", f"{prefix}-02"
    devices(first), devices(second)
    devices.publish(first, [payload(first, [reading(1)])])
    devices.publish(second, [payload(second, [reading(1), reading(2)])])
    for device, count in ((first, 1), (second, 2)):
        dead = wait_for(lambda d=device: rejections(influx, d), what=f"{device}'s dead letter")
        assert [(d["reason"], d["readings"]) for d in dead] == [("storage_rejected", count)]
        assert "field type conflict" in dead[0]["detail"]
    assert "storing its messages one by one" in ingest.logtext()
    assert ingest.metrics()["coldtrace_ingest_rejected_total"] == 3
    assert ingest.health()[0] == 200
    influx.close()


def test_a_dead_writer_fails_health_and_exits_and_its_batch_is_redelivered(
    tmp_path, influx: InfluxClient, start_ingest, devices: Devices, prefix: str
) -> None:
    import sqlite3

    device = f"{prefix}-01"
    ingest = start_ingest()
    db = sqlite3.connect(tmp_path / "ingest.db")
    db.execute("ALTER TABLE held_reading RENAME TO held_reading_away").connection.commit()
    devices.publish(device, [payload(device, [reading(1, ts=None)])])  # must be held: fails
    assert ingest.proc is not None
    assert ingest.proc.wait(timeout=30) == 1
    assert "ingest writer died" in ingest.logtext()
    db.execute("ALTER TABLE held_reading_away RENAME TO held_reading").connection.commit()
    ingest.proc = None
    ingest.start()  # the store is repaired; the un-acked message comes back
    wait_for(lambda: ingest.metrics().get("coldtrace_ingest_held_total") == 1)


def test_the_broker_never_has_more_unacked_messages_out_to_ingest_than_its_bound(
    influx: InfluxClient, start_ingest, devices: Devices, prefix: str
) -> None:
    """Backpressure: with Receive Maximum 5, ingest holds at most 5 un-acked messages; the
    rest wait in the broker, not in ingest's memory, and all arrive in the end."""
    device = f"{prefix}-01"
    ingest = start_ingest(
        COLDTRACE_INGEST_MAX_INFLIGHT="5",
        COLDTRACE_INGEST_BATCH_MESSAGES="1000",
        COLDTRACE_INGEST_BATCH_DELAY_MS="2000",
    )
    devices.publish(device, [payload(device, [reading(s)]) for s in range(1, 51)])
    time.sleep(1.0)  # well inside the first batch's 2 s delay: nothing is acked yet
    assert ingest.metrics()["coldtrace_ingest_received_messages_total"] == 5
    wait_for(lambda: stored_count(influx, device) == 50, 60, "all 50 readings")
