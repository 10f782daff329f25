"""What `coldtrace devices provision` puts on a box (coldtrace/provision.py), without a board:
the file list, the firmware's version, the config for Wi-Fi, TLS and tethered boxes."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from coldtrace.provision import (
    FIRMWARE_DIR,
    BoxConfig,
    ProvisionError,
    firmware_files,
    firmware_version,
)
from coldtrace.tls import ensure_development_ca
from tests.conftest import run_coldtrace


def test_the_firmware_files_are_what_runs_on_the_board() -> None:
    files = firmware_files()
    assert "main.py" in files and "lib/umqtt/simple.py" in files and "lib/ussl.py" in files
    assert not [f for f in files if not f.endswith(".py")]  # no README, no mypy.ini
    assert files["uplink.py"] == (FIRMWARE_DIR / "uplink.py").read_bytes()


def test_the_firmware_version_is_the_projects() -> None:
    assert firmware_version(firmware_files()) == importlib.metadata.version("coldtrace")


def test_a_directory_without_firmware_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match=r"no main\.py"):
        firmware_files(tmp_path)


def test_config_for_wifi_tls_and_tethered() -> None:
    wifi = BoxConfig("van-1", "pw", "mqtt.example", 8883, "depot", "wpw", ca_der=b"der")
    assert wifi.as_json() == {
        "device": "van-1",
        "probes": {},
        "wifi": {"ssid": "depot", "password": "wpw"},
        "mqtt": {
            "host": "mqtt.example",
            "port": 8883,
            "password": "pw",
            "tls": True,
            "ca_file": "ca.der",
        },
    }
    tethered = BoxConfig("box-1", "", None, tethered=True, probes={"28aa000000000001": "air"})
    assert tethered.as_json() == {
        "device": "box-1",
        "probes": {"28aa000000000001": "air"},
        "uplink": "uart",
    }


def test_the_ca_is_converted_to_der(tmp_path: Path) -> None:
    from coldtrace.provision import ca_der

    ensure_development_ca(tmp_path)
    assert ca_der(tmp_path / "ca.pem") == (tmp_path / "ca.der").read_bytes()
    (tmp_path / "junk.pem").write_text("-----BEGIN nothing")
    with pytest.raises(ProvisionError, match="not a certificate"):
        ca_der(tmp_path / "junk.pem")


def test_a_box_that_cannot_be_reached_keeps_its_password(tmp_path: Path) -> None:
    """`provision --rotate` with no box on the port: the error, and the box's account as it
    was (rotating first locked the box out with a password nobody saw)."""
    env = {"COLDTRACE_RUN_DIR": str(tmp_path)}
    assert run_coldtrace("devices", "add", "van-17", **env).returncode == 0
    passwd = tmp_path / "mosquitto" / "passwd"
    before = passwd.read_text()
    port = str(tmp_path / "ttyUSB0")  # nothing there
    proc = run_coldtrace(
        "devices", "provision", "--port", port, "--device-id", "van-17", "--rotate",
        "--wifi-ssid", "depot", "--wifi-password", "secret", **env,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith(f"error: cannot open {port}: ")
    assert proc.stderr.endswith("; is the box plugged in?\n")
    assert passwd.read_text() == before
