"""The in-cab gateway end to end: real pseudo-terminals (pyserial reads real ttys) carrying a
tethered box's JSON lines, NMEA from the field and a reefer logger's CSV lines -> `coldtrace
gateway run` (a real process, its SQLite spool) -> a real Mosquitto -> `coldtrace ingest` ->
InfluxDB, and the end-to-end ack back to the gateway's spool.

The gateway's broker account is written into the broker's ACL here, as `coldtrace devices
add GW --gateway --carries ...` would (one write and one ack-read line per carried device).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.broker_accounts import gateway_acl
from coldtrace.devtools.board import Board
from coldtrace.devtools.gateway_process import GatewayProcess
from coldtrace.devtools.serial_wire import Wire
from coldtrace.devtools.services import free_port
from coldtrace.influx import InfluxClient, quote_string
from coldtrace.settings import Settings
from gateway.spool import read_status
from gateway.uplink import gateway_status_topic
from ingest.books import load_books
from tests.conftest import NMEA_FIXTURE, REPO, ingest_process, rejections, stored_seqs, wait_for

T0 = 1_784_073_573_000  # 2026-07-14T23:59:33Z: the recorded drive's first fix
PASSWORD = "gateway-test-password"


class Broker:
    """A Mosquitto of the test's own: the shipped ACL and limits, plus the gateway's lines."""

    def __init__(self, settings: Settings, directory: Path, acl_extra: str) -> None:
        self.dir = directory
        directory.mkdir(parents=True)
        (directory / "data").mkdir()
        self.port = free_port()
        assert settings.mqtt_password is not None
        ingest_pw = settings.mqtt_password.get_secret_value()
        passwd = directory / "passwd"
        users = {
            "ingest": ingest_pw,
            "ingest-alerts": ingest_pw,
            "gw": PASSWORD,
            "monitor": PASSWORD,
        }
        passwd.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
        subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True)
        acl = directory / "acl"
        acl.write_text((REPO / "deploy" / "mosquitto" / "acl").read_text() + acl_extra)
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(
            f"per_listener_settings false\nlistener {self.port} 127.0.0.1\n"
            "use_username_as_clientid true\n"
            f"password_file {passwd}\nacl_file {acl}\n"
            f"persistence_location {directory}/data/\n"
            f"log_dest file {directory}/mosquitto.log\n"
            + ("user root\n" if os.geteuid() == 0 else "")
            + f"include_dir {REPO}/deploy/mosquitto/conf.d\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)])

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 15, "mosquitto listening")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None


class Rig:
    """Box, GNSS and logger wires into a gateway; the broker; ingest."""

    def __init__(self, settings: Settings, tmp: Path, prefix: str) -> None:
        self.settings = settings
        self.tmp = tmp
        self.box = f"{prefix}-box"
        self.reefer = f"{prefix}-reefer"
        devices = [self.box, self.reefer]
        acl = "\n" + "\n".join(gateway_acl("gw", devices)) + "\n"
        self.broker = Broker(settings, tmp / "broker", acl)
        self.broker.start()
        by_id = tmp / "serial" / "by-id"
        self.wires = {name: Wire(by_id, name) for name in ("box", "gnss", "reefer")}
        (tmp / "gw.secret").write_text(PASSWORD + "\n")
        self.spool = tmp / "spool" / "spool.db"
        self.config = tmp / "gateway.toml"
        self.config.write_text(f"""
gateway = "gw"
spool = "{tmp / "spool" / "spool.db"}"
status_interval_s = 0.5
resend_after_s = 5

[broker]
port = {self.broker.port}
password_file = "{tmp / "gw.secret"}"

[[ports]]
name = "box"
kind = "box"
path = "{self.wires["box"].link}"
carries = ["{self.box}"]

[[ports]]
name = "gnss"
kind = "gnss"
path = "{self.wires["gnss"].link}"
baud = 9600

[[ports]]
name = "reefer"
kind = "logger"
path = "{self.wires["reefer"].link}"
baud = 9600
device = "{self.reefer}"
unit = "F"
probes = {{ return_air = 1, supply_air = 2 }}
time_column = 0
time_format = "%Y-%m-%d %H:%M"
timezone = "Europe/Paris"
""")
        self.gateway = GatewayProcess(self.config, tmp / "gateway.log")
        self.ingest = ingest_process(
            settings.model_copy(update={"mqtt_port": self.broker.port}), tmp
        )

    def close(self) -> None:
        if self.gateway.proc is not None:
            self.gateway.stop(signal.SIGKILL)
        if self.ingest.proc is not None and self.ingest.proc.poll() is None:
            self.ingest.stop(signal.SIGKILL)
        self.broker.stop()
        for w in self.wires.values():
            w.close()


@pytest.fixture
def rig(settings: Settings, tmp_path: Path, prefix: str) -> Iterator[Rig]:
    r = Rig(settings, tmp_path, prefix)
    yield r
    r.close()


def box_line(device: str, boot: int, seqs: range, ts0: int | None) -> bytes:
    """A batch as the tethered firmware writes it (MicroPython's json.dumps), a reading
    every 2 s: seq s at ``ts0 + 2 s * s`` (null without ``ts0``)."""
    readings = [
        {
            "seq": s,
            "ts": None if ts0 is None else ts0 + 2000 * s,
            "up": 60_000 + 2000 * s,
            "probes": {"air": round(3 + s / 100, 2), "product": 2.5},
            "door": False,
            "battery_v": 12.6,
        }
        for s in seqs
    ]
    return json.dumps({"device": device, "boot": boot, "readings": readings}).encode() + b"\n"


def retained_status(rig: Rig) -> dict[str, Any] | None:
    """The gateway's retained status as the monitor account reads it, or None."""
    got: list[bytes] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="monitor")
    client.username_pw_set("monitor", PASSWORD)

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(gateway_status_topic("gw"), 1)
    client.connect("127.0.0.1", rig.broker.port)
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()
    return json.loads(got[0]) if got else None


def assert_books(influx: InfluxClient, device: str, readings: int) -> None:
    """The device's books read back from InfluxDB (`coldtrace books`): every reading stored
    once, none rejected or missing, and the books agree with what ingest wrote."""
    books = load_books(influx, device, None, None)
    assert (books.sent, books.stored, books.rejected, books.missing) == (readings, readings, 0, 0)
    assert (books.first_seq, books.last_seq, books.agrees) == (0, readings - 1, True)


def rows(influx: InfluxClient, query: str, device: str) -> list[dict[str, Any]]:
    return influx.rows(query.format(device=quote_string(device)))


def test_box_gnss_and_logger_lines_are_stored_by_ingest_and_acked_out_of_the_spool(
    rig: Rig, influx: InfluxClient
) -> None:
    rig.ingest.start()
    rig.gateway.start().wait_open()
    gnss, box, reefer = rig.wires["gnss"], rig.wires["box"], rig.wires["reefer"]
    # The recorded drive, with its three damaged sentences and a sentence of noise
    gnss_at = time.time()
    gnss.write(NMEA_FIXTURE.read_bytes() + b"$GPRMC,garbage*00\r\n")

    def gnss_read() -> tuple[int | None, int | None]:
        counters = rig.gateway.status()["ports"]["gnss"]
        return counters.get("sentences"), counters.get("bad_sentence")

    # Waited for whole: the GNSS port's counters are saved with the box's and the reefer's
    # readings from here on, so the status that shows those stored and acked shows these
    wait_for(lambda: gnss_read() == (139, 4), 30, "the drive's 139 good sentences and 4 bad read")
    # A box with a clock, in batches of 10, its readings inside the drive's track: the
    # gateway adds the track's position
    for first in range(0, 60, 10):
        box.write(box_line(rig.box, 3, range(first, first + 10), T0))
    # Garbage between batches, a batch cut by a box reset, an over-long line
    box.write(b"\x00\xff\x13garbage at the wrong baud rate\r\n")
    box.write(
        box_line(rig.box, 3, range(60, 70), None)[:50]
        + box_line(rig.box, 4, range(60, 70), T0 + 200_000)
    )
    box.write(b"x" * 300_000 + b"\n")
    # After a reboot without a clock: the gateway's GNSS time places the new boot's readings
    box.write(box_line(rig.box, 5, range(70, 80), None))
    # The reefer controller: a header, then a reading a line
    reefer.write(b"time,return (F),supply (F)\r\n")
    for i in range(25):
        reefer.write(f"2026-07-15 02:{i:02d},{35.6 + i / 10:.1f},34.7\r\n".encode())

    wait_for(lambda: len(stored_seqs(influx, rig.box)) == 80, 60, "the box's 80 readings stored")
    wait_for(lambda: len(stored_seqs(influx, rig.reefer)) == 25, 60, "25 logger readings")
    assert stored_seqs(influx, rig.box) == list(range(80))
    assert stored_seqs(influx, rig.reefer) == list(range(25))
    assert_books(influx, rig.box, 80)
    assert_books(influx, rig.reefer, 25)
    assert rejections(influx, rig.box) == [] and rejections(influx, rig.reefer) == []

    # Positions from the gateway's GNSS: the reading at the drive's first fix has that fix
    first = rows(
        influx, "SELECT lat, lon, seq FROM position WHERE device = {device} AND seq = 0", rig.box
    )
    assert len(first) == 1
    assert abs(first[0]["lat"] - (48 + 45.31758 / 60)) < 1e-6
    assert abs(first[0]["lon"] - (2 + 21.23316 / 60)) < 1e-6
    # The clockless boot: one offset for all (ts = offset + up), taken when its batch came in
    # on the GNSS clock (the drive's last RMC, 00:00:32Z, carried on by the gateway's clock)
    placed = rows(
        influx, "SELECT seq, up FROM device_health WHERE device = {device} AND boot = 5", rig.box
    )
    assert [r["seq"] for r in placed] == list(range(70, 80))
    offsets = {r["time"] - r["up"] for r in placed}
    assert len(offsets) == 1
    last_rmc = 1_784_073_632_000
    newest = offsets.pop() + placed[-1]["up"]
    assert last_rmc <= newest <= last_rmc + (time.time() - gnss_at) * 1000
    # The logger's readings: converted from F, numbered by the gateway, in the boot it gave
    temps = rows(
        influx,
        "SELECT celsius, seq FROM temperature WHERE device = {device} AND probe = 'return_air'",
        rig.reefer,
    )
    # 02:00 in Paris (summer time) is 00:00 UTC; 35.6 F is 2.0 C
    midnight = 1_784_073_600_000
    assert [(t["time"], t["seq"], t["celsius"]) for t in temps][:3] == [
        (midnight, 0, 2.0),
        (midnight + 60_000, 1, 2.06),
        (midnight + 120_000, 2, 2.11),
    ]

    # The ports' counters are saved in the transaction that spools the readings they count:
    # a status whose spool is empty of them counts them all (a status is one snapshot)
    status = wait_for(
        lambda: (s := rig.gateway.status())["depth"] == 0 and s, 30, "the spool emptied by the acks"
    )
    ports = status["ports"]
    assert ports["box"]["readings"] == 80
    assert ports["box"]["garbage"] == 1
    assert ports["box"]["torn"] == 1
    assert ports["box"]["overlong"] == 1
    assert ports["reefer"]["header"] == 1
    assert ports["reefer"]["readings"] == 25
    assert {d["device"]: d["acked_seq"] for d in status["devices"]} == {rig.box: 79, rig.reefer: 24}
    # The same on the gateway's retained status topic, once one of the spool after the acks
    published = wait_for(
        lambda: (
            (p := retained_status(rig)) is not None
            and (p["depth"], p["devices"]) == (0, status["devices"])
            and p
        ),
        30,
        "the status of the acked spool published",
    )
    assert published["ports"] == ports
    assert (published["gateway"], published["connected"]) == ("gw", True)
    assert rig.gateway.stop() == 0


def box_lines(device: str, boot: int, seqs: range, per_line: int, ts0: int) -> bytes:
    return b"".join(
        box_line(device, boot, range(i, min(i + per_line, seqs.stop)), ts0)
        for i in range(seqs.start, seqs.stop, per_line)
    )


def logger_lines(minutes: range) -> bytes:
    """The reefer's lines, one a minute from 2026-07-15 02:00 Paris time."""
    return b"".join(
        f"2026-07-15 {2 + m // 60:02d}:{m % 60:02d},35.6,34.7\r\n".encode() for m in minutes
    )


def test_broker_away_the_spool_grows_then_drains_in_order(rig: Rig, influx: InfluxClient) -> None:
    rig.ingest.start()
    rig.gateway.start().wait_open()
    box, reefer = rig.wires["box"], rig.wires["reefer"]
    box.write(box_lines(rig.box, 1, range(0, 100), 20, T0))
    wait_for(
        lambda: rig.gateway.status()["depth"] == 0 and len(stored_seqs(influx, rig.box)) == 100,
        30,
        "the first 100 stored and acked",
    )

    rig.broker.stop()
    box.write(box_lines(rig.box, 1, range(100, 400), 20, T0))
    reefer.write(logger_lines(range(0, 30)))
    status = wait_for(
        lambda: (s := rig.gateway.status())["depth"] == 330 and s,
        30,
        "330 readings spooled while the broker is away",
    )
    assert status["oldest_unacked_age_s"] >= 0
    assert {d["device"]: d["pending"] for d in status["devices"]} == {rig.box: 300, rig.reefer: 30}

    rig.broker.start()
    wait_for(lambda: len(stored_seqs(influx, rig.box)) == 400, 60, "the backlog stored")
    wait_for(lambda: len(stored_seqs(influx, rig.reefer)) == 30, 30, "the logger's backlog")
    assert stored_seqs(influx, rig.box) == list(range(400))
    assert stored_seqs(influx, rig.reefer) == list(range(30))
    assert_books(influx, rig.box, 400)
    assert_books(influx, rig.reefer, 30)
    assert rejections(influx, rig.box) == []
    wait_for(lambda: rig.gateway.status()["depth"] == 0, 30, "the spool emptied")


def test_sigkill_mid_publish_then_restart_stores_each_reading_once(
    rig: Rig, influx: InfluxClient
) -> None:
    rig.ingest.start()
    rig.gateway.start().wait_open()
    box, reefer = rig.wires["box"], rig.wires["reefer"]
    # Ingest paused (SIGSTOP): no ack comes back, so the kill finds every reading unacked,
    # some published (queued by the broker for ingest), the rest on their way
    assert rig.ingest.proc is not None
    os.kill(rig.ingest.proc.pid, signal.SIGSTOP)
    total = 20_000
    box.write(box_lines(rig.box, 2, range(0, total), 100, T0))
    reefer.write(logger_lines(range(0, 20)))

    def spooled() -> dict[str, int]:
        return {d["device"]: d["high_seq"] for d in read_status(rig.spool)["devices"]}

    wait_for(lambda: spooled() == {rig.box: total - 1, rig.reefer: 19}, 60, "all spooled")
    rig.gateway.stop(signal.SIGKILL)
    assert read_status(rig.spool)["depth"] == total + 20  # the spool on disk as the kill left it
    os.kill(rig.ingest.proc.pid, signal.SIGCONT)

    rig.gateway.start().wait_open(opens=1)
    reefer.write(logger_lines(range(20, 30)))
    wait_for(lambda: len(stored_seqs(influx, rig.box)) == total, 120, "every box reading stored")
    wait_for(lambda: len(stored_seqs(influx, rig.reefer)) == 30, 30, "every logger reading")
    assert stored_seqs(influx, rig.box) == list(range(total))
    assert_books(influx, rig.box, total)
    assert_books(influx, rig.reefer, 30)
    # The logger's seqs go on across the gateway's restart, in its next boot
    health = rows(influx, "SELECT seq, boot FROM device_health WHERE device = {device}", rig.reefer)
    assert [(r["seq"], r["boot"]) for r in health] == [(i, 0 if i < 20 else 1) for i in range(30)]
    # Sent again after the restart, never with other content: no conflicting duplicate
    assert rejections(influx, rig.box) == [] and rejections(influx, rig.reefer) == []
    wait_for(lambda: rig.gateway.status()["depth"] == 0, 30, "the spool emptied")


def test_unplugged_and_plugged_back_the_port_is_read_again(rig: Rig, influx: InfluxClient) -> None:
    rig.ingest.start()
    rig.gateway.start().wait_open()
    box = rig.wires["box"]
    box.write(box_lines(rig.box, 1, range(0, 10), 10, T0))
    wait_for(lambda: len(stored_seqs(influx, rig.box)) == 10, 30, "the first 10 stored")
    box.unplug()
    wait_for(
        lambda: rig.gateway.status()["ports"]["box"].get("disconnects") == 1,
        30,
        "the gateway saw the port go",
    )
    box.plug()
    wait_for(
        lambda: rig.gateway.status()["ports"]["box"].get("opens") == 2, 30, "the port opened again"
    )
    box.write(box_lines(rig.box, 1, range(10, 20), 10, T0))
    wait_for(lambda: len(stored_seqs(influx, rig.box)) == 20, 30, "the next 10 stored")
    assert stored_seqs(influx, rig.box) == list(range(20))


def test_the_real_firmwares_tethered_output_replayed_is_stored(
    rig: Rig, influx: InfluxClient, tmp_path: Path
) -> None:
    # Record: the firmware on the real MicroPython, tethered (uplink "uart"), no clock: its
    # UART1 output (JSON lines) into a file
    recording = tmp_path / "uart1.jsonl"
    config = {
        "device": rig.box,
        "uplink": "uart",
        "interval_ms": 100,
        "ds18b20_conversion_ms": 10,
        "probes": {"28aa000000000001": "air", "28aa000000000002": "product"},
    }
    world = {
        "probes": {"28aa000000000001": 3.5, "28aa000000000002": [2.5, -127, 2.75]},
        "uart_tx": {"1": str(recording)},
    }
    board = Board(tmp_path / "flash", config, world).start()
    try:
        wait_for(
            lambda: recording.exists() and len(recording.read_bytes().splitlines()) >= 20,
            60,
            "20 lines from the box",
        )
    finally:
        board.kill()
    recorded = recording.read_bytes()
    seqs = [r["seq"] for line in recorded.splitlines() for r in json.loads(line)["readings"]]
    assert seqs == list(range(len(seqs)))

    # Replay: after the GNSS gave the gateway a time, the recorded lines into the box's port
    rig.ingest.start()
    rig.gateway.start().wait_open()
    rig.wires["gnss"].write(NMEA_FIXTURE.read_bytes())
    wait_for(lambda: rig.gateway.status()["ports"]["gnss"].get("sentences") == 139, 30, "GNSS read")
    rig.wires["box"].write(recorded)
    wait_for(lambda: len(stored_seqs(influx, rig.box)) == len(seqs), 60, "the recording stored")
    assert stored_seqs(influx, rig.box) == seqs
    assert rejections(influx, rig.box) == []
    # Placed by the gateway's clock (one offset for the boot), the faults stored as such
    health = rows(influx, "SELECT up, boot FROM device_health WHERE device = {device}", rig.box)
    assert len({r["time"] - r["up"] for r in health}) == 1
    faults = rows(
        influx,
        "SELECT fault FROM temperature WHERE device = {device} AND probe = 'product'",
        rig.box,
    )
    disconnected = [
        r["seq"]
        for line in recorded.splitlines()
        for r in json.loads(line)["readings"]
        if r["probes"]["product"] == -127
    ]
    assert disconnected and [f["fault"] for f in faults] == ["disconnected"] * len(disconnected)
