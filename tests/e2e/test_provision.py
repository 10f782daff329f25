"""`coldtrace devices provision` and `info` against the real MicroPython unix port's REPL on a
pseudo-terminal (mpremote drives it as it drives a board's USB serial port; the unix port has
no soft reset, hence --no-soft-reset), then the provisioned flash run as a board on the real
MicroPython with the fake ESP32 hardware: it logs in to the session's real broker over TLS
with the account `devices add` made, with the vendored MQTT client it was given (the
client-library mismatch of issue 17 would fail here)."""

from __future__ import annotations

import json
from pathlib import Path

from coldtrace.contract import status_topic, telemetry_topic
from coldtrace.devtools.board import FIRMWARE, Board, SerialRepl
from coldtrace.devtools.services import LocalServices
from coldtrace.settings import Settings
from tests.conftest import monitor_login, run_coldtrace, wait_for
from tests.e2e.test_broker_security import Probe
from tests.e2e.test_devices_cli import cli_env, devices

AIR = "28aa000000000001"
FIRMWARE_FILES = sorted(
    p.relative_to(FIRMWARE).as_posix()
    for pattern in ("*.py", "lib/**/*.py")
    for p in FIRMWARE.glob(pattern)
)


def test_provisioned_box_logs_in_over_tls(
    settings: Settings, services: LocalServices, tmp_path: Path, prefix: str
) -> None:
    env = cli_env(settings, tmp_path)
    device = f"{prefix}-box"
    devices(env, "add", device)
    flash = tmp_path / "flash"
    repl = SerialRepl(flash)
    try:
        done = run_coldtrace(
            "devices", "provision", "--port", repl.port, "--device-id", device, "--rotate",
            "--wifi-ssid", "depot", "--wifi-password", "not-used-by-the-fake",
            "--broker-host", "localhost", "--ca", str(services.tls_dir / "ca.pem"),
            "--probe", f"{AIR}=air", "--no-soft-reset",
            **env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"box {device} provisioned on {repl.port}: firmware 0.1.0\n"
        info = run_coldtrace(
            "devices", "info", "--port", repl.port, "--no-soft-reset", "--json", **env
        )
        assert info.returncode == 0, info.stderr
    finally:
        repl.close()
    assert json.loads(info.stdout) == {
        "version": "0.1.0",
        "config": {
            "device": device,
            "probes": {AIR: "air"},
            "wifi": {"ssid": "depot", "password": "***"},
            "mqtt": {
                "host": "localhost",
                "port": settings.mqtt_tls_port,
                "password": "***",
                "tls": True,
                "ca_file": "ca.der",
            },
        },
        "files": sorted(
            {"ca.der", "config.json", "lib", "lib/umqtt", "lib/ussl.py"}
            | {f for f in FIRMWARE_FILES if "/" not in f}
        ),
    }
    on_flash = sorted(p.relative_to(flash).as_posix() for p in flash.rglob("*") if p.is_file())
    assert on_flash == sorted([*FIRMWARE_FILES, "ca.der", "config.json"])
    assert (flash / "ca.der").read_bytes() == (services.tls_dir / "ca.der").read_bytes()

    monitor = Probe(settings, *monitor_login(settings))
    board = Board(flash, None, {"probes": {AIR: 3.5}, "battery_uv": 1140000}, firmware=flash)
    try:
        monitor.subscribe(status_topic(device))
        monitor.subscribe(telemetry_topic(device))
        board.start()
        wait_for(
            lambda: (status_topic(device), b"online") in monitor.received,
            60,
            f"the provisioned box online over TLS (log: {board.logtext()})",
        )
        wait_for(
            lambda: any(t == telemetry_topic(device) for t, _ in monitor.received),
            60,
            "its first batch",
        )
        batch = json.loads(next(b for t, b in monitor.received if t == telemetry_topic(device)))
        assert batch["device"] == device
        assert batch["readings"][0]["probes"] == {"air": 3.5}
    finally:
        board.kill()
        monitor.close()


def test_info_of_a_port_that_is_no_repl_is_one_line(tmp_path: Path, settings: Settings) -> None:
    done = run_coldtrace(
        "devices", "info", "--port", str(tmp_path / "ttyNONE"), **cli_env(settings, tmp_path)
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot open {tmp_path / 'ttyNONE'}: ")
    assert done.stderr.count("\n") == 1
