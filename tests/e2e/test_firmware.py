"""The MicroPython firmware on the real interpreter (unix port, fake ESP32 hardware only) ->
the real Mosquitto with its per-device account -> ingest -> InfluxDB."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.contract import TelemetryBatch, config_topic, status_topic, telemetry_topic
from coldtrace.devtools.board import Board, run
from coldtrace.devtools.services import LocalServices, device_password
from coldtrace.influx import InfluxClient, quote_string
from coldtrace.settings import Settings
from coldtrace.tls import make_ca
from tests.conftest import NMEA_FIXTURE, monitor_login, rejections, stored_seqs, wait_for

AIR, PRODUCT = "28aa000000000001", "28aa000000000002"


class Recorder:
    """Every telemetry batch of one device as the broker hands it out, in order (a persistent
    session of the monitor account, so a broker restart loses nothing it had accepted)."""

    def __init__(self, settings: Settings, device: str) -> None:
        self.batches: list[TelemetryBatch] = []
        self.status: list[bytes] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="monitor",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self.client.username_pw_set(*monitor_login(settings))
        self.client.on_message = self._message
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(telemetry_topic(device), 1), (status_topic(device), 1)]
        )
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            self.status.append(msg.payload)
        else:
            self.batches.append(TelemetryBatch.model_validate_json(msg.payload))

    def seqs(self) -> list[int]:
        return [r.seq for b in self.batches for r in b.readings]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def board_factory(settings: Settings, tmp_path: Path, prefix: str) -> Iterator[Any]:
    boards: list[Board] = []
    recorders: list[Recorder] = []

    def make(config: dict[str, Any] | None = None, **scenario: Any) -> tuple[str, Board, Recorder]:
        config = dict(config or {})
        device = f"{prefix}-fw"
        LocalServices(settings).register_devices([device])
        cfg = {
            "device": device,
            "wifi": {"ssid": "depot", "password": "not-used-by-the-fake"},
            "mqtt": {
                "host": "127.0.0.1",
                "port": settings.mqtt_port,
                "password": device_password(settings, device),
                "keepalive_s": 10,
                **config.pop("mqtt", {}),
            },
            "interval_ms": 100,
            "ds18b20_conversion_ms": 10,
            "ntp_retry_ms": 300,
            "batch_max": 20,
            "probes": {AIR: "air", PRODUCT: "product"},
            "limits": {"product": [0, 4]},
            **config,
        }
        world = {"probes": {AIR: 3.5, PRODUCT: 2.5}, "battery_uv": 1140000, **scenario}
        recorder = Recorder(settings, device)
        recorders.append(recorder)
        board = Board(tmp_path / "flash", cfg, world)
        boards.append(board)
        return device, board, recorder

    yield make
    for b in boards:
        b.kill()
    for r in recorders:
        r.close()


def health_rows(influx: InfluxClient, device: str) -> list[dict[str, Any]]:
    return influx.rows(f"SELECT seq, boot FROM device_health WHERE device = {quote_string(device)}")


def test_firmware_readings_are_stored_by_ingest(
    influx: InfluxClient, start_ingest, board_factory
) -> None:
    device, board, recorder = board_factory(
        probes={AIR: 3.5, PRODUCT: [2.5, -127, 85, "crc", 2.75]},
        nmea=str(NMEA_FIXTURE),
        nmea_bytes_per_s=4000,
    )
    start_ingest()
    board.start()
    wait_for(lambda: len(stored_seqs(influx, device)) >= 30, 60, "30 readings stored")
    board.kill()

    seqs = stored_seqs(influx, device)
    assert seqs == list(range(len(seqs))), "every seq from 0, none missing or doubled"
    assert rejections(influx, device) == []
    assert {r["boot"] for r in health_rows(influx, device)} == {0}
    # The DS18B20's -127 and 85 and the CRC failure are faults, not temperatures.
    faults = influx.rows(
        f"SELECT fault, seq FROM temperature WHERE device = {quote_string(device)} "
        "AND probe = 'product' AND fault <> ''"
    )
    assert [(f["seq"], f["fault"]) for f in faults][:3] == [
        (1, "disconnected"),
        (2, "power_on_value"),
        (3, "no_value"),
    ]
    positions = influx.rows(f"SELECT lat, lon FROM position WHERE device = {quote_string(device)}")
    assert positions and all(48.7 < p["lat"] < 48.9 and 2.3 < p["lon"] < 2.4 for p in positions)
    # NTP set the clock at the first connection: the readings carry the host's time.
    assert all(b.readings[-1].ts is not None for b in recorder.batches)
    assert abs(recorder.batches[-1].readings[-1].ts - time.time() * 1000) < 60_000  # type: ignore[operator]
    assert recorder.status[0] == b"online"
    # The power went (SIGKILL): the broker publishes the device's last will.
    wait_for(lambda: recorder.status[-1] == b"offline", 30, "the last will")


def test_retained_config_applies_without_reboot(
    settings: Settings, influx: InfluxClient, start_ingest, board_factory
) -> None:
    device, board, recorder = board_factory({"interval_ms": 2000})
    start_ingest()
    board.start()
    wait_for(lambda: recorder.batches, 30, "first batch")
    pid = board.proc.pid if board.proc else None

    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    assert settings.mqtt_username and settings.mqtt_password
    publisher.username_pw_set(settings.mqtt_username, settings.mqtt_password.get_secret_value())
    publisher.connect(settings.mqtt_host, settings.mqtt_port)
    publisher.loop_start()
    new = {"interval_ms": 100, "limits": {"product": [0, 2]}}
    publisher.publish(config_topic(device), json.dumps(new), qos=1, retain=True).wait_for_publish(
        10
    )
    publisher.publish(config_topic(device), None, qos=1, retain=True).wait_for_publish(10)
    publisher.loop_stop()
    publisher.disconnect()

    remote = board.flash / "data" / "remote.json"
    wait_for(remote.exists, 30, "the device to keep the new config")
    assert json.loads(remote.read_text()) == new
    # Sampling every 100 ms now instead of every 2 s, in the same process (no reboot).
    before = len(recorder.seqs())
    wait_for(lambda: len(recorder.seqs()) >= before + 10, 30, "ten more readings")
    ups = [r.up for b in recorder.batches for r in b.readings][before:]
    assert max(b - a for a, b in pairwise(ups[1:])) < 1000
    assert board.proc is not None and board.proc.pid == pid
    assert {b.boot for b in recorder.batches} == {0}


def test_broker_outage_fills_the_outbox_and_it_drains_in_order(
    services: LocalServices, influx: InfluxClient, start_ingest, board_factory
) -> None:
    device, board, recorder = board_factory()
    start_ingest()
    board.start()
    wait_for(lambda: len(stored_seqs(influx, device)) >= 5, 30, "first readings stored")
    services.stop("mosquitto")
    try:
        time.sleep(4)  # about 30 readings at 100 ms go to the outbox meanwhile
    finally:
        services.start("mosquitto")
    stored_before_outage = len(recorder.seqs())
    wait_for(
        lambda: len(stored_seqs(influx, device)) >= stored_before_outage + 30,
        60,
        "the backlog to drain",
    )
    board.kill()
    wait_for(lambda: stored_seqs(influx, device) == sorted(set(recorder.seqs())), 30, "all stored")

    seqs = stored_seqs(influx, device)
    assert seqs == list(range(len(seqs)))
    # In order, each once (a batch whose PUBACK was lost in the outage may come twice).
    seen = recorder.seqs()
    first_seen = list(dict.fromkeys(seen))
    assert first_seen == seqs
    assert len(seen) - len(first_seen) <= 20
    assert b"offline" in recorder.status  # the last will, when the broker went away
    assert "uplink down" in board.logtext()


def acked(board: Board) -> int:
    """The last seq ingest acknowledged to the device, as its flash holds it (-1: none)."""
    path = board.flash / "data" / "outbox" / "acked"
    return json.loads(path.read_text()) if path.exists() else -1


def test_a_broker_killed_with_readings_queued_for_ingest_loses_nothing(
    services: LocalServices, influx: InfluxClient, start_ingest, board_factory
) -> None:
    """The broker PUBACKs readings it queues for an absent ingest, then is killed (SIGKILL)
    before it saved them: the device still holds them, as ingest never acknowledged them, and
    sends them again once the broker is back."""
    device, board, recorder = board_factory()
    ingest = start_ingest()
    board.start()
    wait_for(lambda: acked(board) >= 5, 30, "the first readings acknowledged")
    ingest.stop()
    # Not the flash's ack: one ingest published just before it stopped may still be on its
    # way to the board. No ack can cover more than ingest stored.
    held_from = max(stored_seqs(influx, device)) + 1
    wait_for(lambda: recorder.seqs() and max(recorder.seqs()) >= held_from + 20, 30, "PUBACKs")
    queued = max(recorder.seqs())
    assert acked(board) < held_from, "no acknowledgement while ingest is away"
    services.stop("mosquitto", signal.SIGKILL)
    services.start("mosquitto")
    start_ingest()
    wait_for(lambda: acked(board) >= queued, 60, "everything queued acknowledged")
    board.kill()

    seqs = stored_seqs(influx, device)
    assert seqs == list(range(len(seqs))), "nothing lost, nothing doubled"
    assert seqs[-1] >= queued
    assert "uplink down" in board.logtext()


def test_power_cut_in_a_dead_zone_loses_nothing_and_counts_the_boot(
    influx: InfluxClient, start_ingest, board_factory
) -> None:
    device, board, recorder = board_factory()
    start_ingest()
    board.start()
    wait_for(lambda: len(stored_seqs(influx, device)) >= 5, 30, "first readings stored")
    board.update_scenario(wifi=False)  # into a dead zone
    time.sleep(2)
    board.kill()  # power cut, outbox full of unsent readings
    # ... in the middle of writing a record: a length and half a CRC made it to flash.
    last_segment = sorted((board.flash / "data" / "outbox").glob("*.seg"))[-1]
    with last_segment.open("ab") as f:
        f.write(b"\x31\x00\x8e\x1f")
    board.start()  # boot 1, still in the dead zone
    time.sleep(2)
    board.update_scenario(wifi=True)
    # Boot 1's dead-zone readings have no ts: they are placed from its first synced one.
    wait_for(
        lambda: any(b.boot == 1 and b.readings[-1].ts for b in recorder.batches),
        60,
        "boot 1 synced",
    )
    board.kill()
    wait_for(lambda: stored_seqs(influx, device) == sorted(set(recorder.seqs())), 60, "all stored")

    rows = health_rows(influx, device)
    seqs = stored_seqs(influx, device)
    assert seqs == list(range(len(seqs))), "nothing lost across the power cut, nothing doubled"
    by_boot = {b: [r["seq"] for r in rows if r["boot"] == b] for b in (0, 1)}
    assert by_boot[0] and by_boot[1]
    assert max(by_boot[0]) < min(by_boot[1]), "seq goes on upward after the reboot"
    # The dead zone's readings of boot 0, sent after the reboot, still say boot 0.
    assert by_boot[0] == list(range(min(by_boot[1])))
    assert {r["boot"] for r in rows} == {0, 1}
    assert "cut back" in board.logtext(), "the torn record was found and cut off"
    gaps = influx.rows(f"SELECT * FROM seq_gap WHERE device = {quote_string(device)}")
    assert [g for g in gaps if g["missing"]] == [], "no gap left open"


def test_full_outbox_drops_the_oldest_and_reports_the_gap(
    influx: InfluxClient, start_ingest, board_factory
) -> None:
    device, board, recorder = board_factory(
        {"outbox_bytes": 1024, "segment_bytes": 256}, wifi=False
    )
    start_ingest()
    board.start()
    # In a dead zone until the outbox (four 256-byte segments) has dropped its oldest two.
    dropped = board.flash / "data" / "outbox" / "dropped"
    wait_for(lambda: dropped.exists() and json.loads(dropped.read_text())[0][1] >= 10, 60, "drops")
    board.update_scenario(wifi=True)
    # The dead zone's readings have no ts (no NTP there): ingest places them once the
    # readings after NTP came in, so let those come too.
    wait_for(lambda: recorder.batches and recorder.batches[-1].readings[-1].ts, 30, "synced")
    board.kill()
    sent = max(recorder.seqs())
    wait_for(lambda: set(stored_seqs(influx, device)) == set(recorder.seqs()), 30, "all stored")

    reported = recorder.batches[0].dropped
    assert reported and reported[0].first == 0
    dropped = {s for d in reported for s in range(d.first, d.last + 1)}
    stored = set(stored_seqs(influx, device))
    assert dropped.isdisjoint(stored)
    assert dropped | stored == set(range(sent + 1)), "every seq is stored or reported dropped"
    gaps = influx.rows(f"SELECT * FROM seq_gap WHERE device = {quote_string(device)}")
    # Still missing: exactly what the device reported (held ts-null readings may open a gap
    # at ingest for a moment, filled once they are placed).
    assert [(g["source"], g["first"], g["last"], g["missing"]) for g in gaps if g["missing"]] == [
        ("device", d.first, d.last, d.last - d.first + 1) for d in reported
    ]


def test_unsynced_clock_sends_null_ts_and_ingest_places_the_readings(
    influx: InfluxClient, start_ingest, board_factory
) -> None:
    device, board, recorder = board_factory(ntp_after_ms=2500)
    start_ingest()
    started_ms = time.time() * 1000
    board.start()
    wait_for(
        lambda: any(r.ts is not None for b in recorder.batches for r in b.readings),
        30,
        "the clock to be set by NTP",
    )
    time.sleep(1)
    board.kill()
    wait_for(lambda: stored_seqs(influx, device) == sorted(set(recorder.seqs())), 30, "all stored")

    readings = [r for b in recorder.batches for r in b.readings]
    unsynced = [r for r in readings if r.ts is None]
    assert len(unsynced) >= 2 and readings[0].ts is None
    rows = influx.rows(
        f"SELECT seq FROM device_health WHERE device = {quote_string(device)} ORDER BY time"
    )
    # Ingest placed the ts-null readings from the first synced one: in seq order, in the
    # test's time window, spaced as the device's uptime says.
    assert [r["seq"] for r in rows] == [r.seq for r in readings]
    times = {r["seq"]: r["time"] for r in rows}
    first = readings[0]
    ref = next(r for r in readings if r.ts is not None)
    assert ref.ts is not None
    assert abs(times[first.seq] - (ref.ts + first.up - ref.up)) <= 1
    assert started_ms - 2000 < times[first.seq] < started_ms + 10_000


def test_a_refused_login_keeps_the_readings_and_retries(settings: Settings, board_factory) -> None:
    _, board, recorder = board_factory({"mqtt": {"password": "wrong"}})
    board.start()
    wait_for(lambda: board.logtext().count("uplink down") >= 2, 30, "two refused logins")
    assert board.running(), board.logtext()
    assert "MQTTException(5" in board.logtext()  # CONNACK 5: not authorised
    assert recorder.batches == []
    board.kill()
    code = """
import json
from outbox import Outbox
print(json.dumps([r["seq"] for r in Outbox("data/outbox", 262144, 4096).take(500)[1]]))
"""
    waiting = run(code, board.flash)
    assert waiting and waiting == list(range(len(waiting))), "every reading waits in the outbox"


def test_tls_broker_is_verified_against_the_configured_ca(
    settings: Settings, services: LocalServices, board_factory
) -> None:
    """The firmware on the real MicroPython, over the TLS listener `coldtrace services`
    configures on the session broker, trusting the CA it made (DER); then trusting another
    CA, it refuses the broker."""
    from cryptography.hazmat.primitives import serialization

    port, ca = settings.mqtt_tls_port, services.tls_dir / "ca.der"
    other_ca = make_ca("someone else's CA")[1].public_bytes(serialization.Encoding.DER)
    tls = {"host": "localhost", "port": port, "tls": True, "ca_file": "ca.der"}
    device, board, _ = board_factory({"mqtt": tls})
    (board.flash / "ca.der").write_bytes(ca.read_bytes())

    received: list[TelemetryBatch] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    sub.username_pw_set(*monitor_login(settings))
    sub.tls_set(ca_certs=str(ca.with_name("ca.pem")))
    sub.on_message = lambda c, u, m: received.append(TelemetryBatch.model_validate_json(m.payload))
    sub.on_connect = lambda c, *_: c.subscribe(telemetry_topic(device), 1)
    sub.connect("localhost", port)
    sub.loop_start()
    try:
        board.start()
        wait_for(lambda: received, 30, "a batch over TLS")
        assert received[0].device == device
        board.kill()

        # The same device trusting another CA refuses the broker: nothing is sent.
        (board.flash / "ca.der").write_bytes(other_ca)
        before = len(received)
        board.start()
        wait_for(lambda: board.logtext().count("uplink down") >= 2, 30, "refused TLS handshakes")
        assert len(received) == before
    finally:
        sub.loop_stop()
        sub.disconnect()
