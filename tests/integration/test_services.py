"""`coldtrace services`: real servers from the system packages, stopped by pid, exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from coldtrace.devtools.scratch import scratch_settings
from coldtrace.devtools.services import (
    RELOAD_PROBE,
    LocalServices,
    ServiceError,
    device_password,
)
from coldtrace.settings import Settings
from tests.conftest import run_coldtrace


def _own_services(tmp_path: Path, **overrides: object) -> LocalServices:
    """Servers of the test's own on free ports, every listener (not Mosquitto's TLS ports
    8883/8884, which a developer's `services up` or another test run holds)."""
    return LocalServices(scratch_settings(tmp_path / "run", **overrides))


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_status_reports_the_running_servers(settings: Settings, services: LocalServices) -> None:
    rows = {r["service"]: r for r in services.status()}
    assert rows["mosquitto"]["state"] == "running"
    assert rows["influxdb"]["state"] == "running"
    assert rows["mosquitto"]["address"] == f"127.0.0.1:{settings.mqtt_port}"
    pid = rows["influxdb"]["pid"]
    assert isinstance(pid, int) and _alive(pid)


def test_up_then_down_stops_exactly_what_it_started(
    tmp_path: Path, services: LocalServices
) -> None:
    session_pids = [r["pid"] for r in services.status()]
    own = _own_services(tmp_path)
    own.up()
    try:
        pids = {r["service"]: r["pid"] for r in own.status()}
        assert all(isinstance(p, int) and _alive(p) for p in pids.values())
        url = own.settings.influx_url
        assert httpx.get(f"{url}/ping").status_code == 204
        # Bound to loopback only, with the data under the run directory.
        assert (tmp_path / "run" / "influxdb" / "data").is_dir()
        assert "127.0.0.1" in (tmp_path / "run" / "mosquitto" / "mosquitto.conf").read_text()
    finally:
        assert sorted(own.down()) == ["influxdb", "mosquitto"]
    assert not any(_alive(p) for p in pids.values() if isinstance(p, int))
    assert all(r["state"] == "stopped" for r in own.status())
    # The session's servers were not touched.
    assert [r["pid"] for r in services.status()] == session_pids


def _env(own: LocalServices) -> dict[str, str]:
    """The settings of ``own`` for a `coldtrace services` process."""
    s = own.settings
    return {
        "COLDTRACE_RUN_DIR": str(s.run_dir),
        "COLDTRACE_MQTT_PORT": str(s.mqtt_port),
        "COLDTRACE_MQTT_TLS_PORT": str(s.mqtt_tls_port),
        "COLDTRACE_MQTT_MTLS_PORT": str(s.mqtt_mtls_port),
        "COLDTRACE_INFLUX_URL": s.influx_url,
    }


def test_down_of_one_service_leaves_the_others_running(tmp_path: Path) -> None:
    own = _own_services(tmp_path)
    s = own.settings
    env = _env(own)
    own.up()
    try:
        done = run_coldtrace("services", "down", "mosquitto", "--json", **env)
        assert done.returncode == 0, done.stderr
        states = {r["service"]: r["state"] for r in json.loads(done.stdout)}
        assert states == {"mosquitto": "stopped", "influxdb": "running"}
        again = run_coldtrace("services", "down", "mosquitto", **env)
        assert again.stdout.splitlines()[0] == "stopped: nothing was running"
        assert httpx.get(f"{s.influx_url}/ping").status_code == 204
    finally:
        own.down()


def test_down_never_kills_a_process_it_did_not_start(tmp_path: Path) -> None:
    own = _own_services(tmp_path)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        pidfile = tmp_path / "run" / "influxdb" / "influxdb.pid"
        pidfile.parent.mkdir(parents=True)
        pidfile.write_text(str(stranger.pid))  # a stale pid file, its pid now reused
        assert own.pid("influxdb") is None
        assert own.down() == []
        assert stranger.poll() is None
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait()


# A server whose main thread exits before its other threads, as influxd's may on a loaded
# machine (the kernel shows the main thread as a zombie while the others still exit); here
# the other thread lingers a second. Its command line names the config, as a real one's does.
MAIN_THREAD_EXITS_FIRST = """
import ctypes, os, signal, threading, time

def linger():
    time.sleep(1)
    os._exit(0)

def on_term(*_):
    threading.Thread(target=linger).start()
    ctypes.CDLL(None).pthread_exit(None)

signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("by", ["this process", "coldtrace services down"])
def test_down_returns_once_every_thread_of_the_server_has_exited(tmp_path: Path, by: str) -> None:
    own = _own_services(tmp_path)
    home = tmp_path / "run" / "influxdb"
    home.mkdir(parents=True)
    server = subprocess.Popen(
        [sys.executable, "-c", MAIN_THREAD_EXITS_FIRST, str(home / "influxdb.conf")],
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        (home / "influxdb.pid").write_text(str(server.pid))
        assert own.pid("influxdb") == server.pid
        if by == "this process":
            # The server is this process's child: reaped, not even a zombie is left
            assert own.down() == ["influxdb"]
            assert not _alive(server.pid)
        else:
            # Another's child: it has exited (a zombie until its parent, this test, reaps it)
            done = run_coldtrace("services", "down", "--json", **_env(own))
            assert done.returncode == 0, done.stderr
            assert server.poll() == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_server_that_cannot_start_says_where_to_look(tmp_path: Path, settings: Settings) -> None:
    # The session's broker already holds this port.
    own = _own_services(tmp_path, mqtt_port=settings.mqtt_port)
    with pytest.raises(ServiceError, match=r"port \d+ on 127.0.0.1 is taken.*COLDTRACE_MQTT_PORT"):
        own.start("mosquitto")
    assert own.pid("mosquitto") is None


def test_a_registered_device_logs_in_as_soon_as_register_devices_returns(
    settings: Settings, services: LocalServices
) -> None:
    """Mosquitto re-reads its accounts on SIGHUP asynchronously: register_devices returns
    only once it has (a probe account's new password logs in), not after a guessed sleep."""
    passwd = settings.run_dir / "mosquitto" / "passwd"

    def probe_hash() -> str | None:
        lines = passwd.read_text().splitlines()
        return next((ln for ln in lines if ln.startswith(f"{RELOAD_PROBE}:")), None)

    probe_before = probe_hash()
    services.register_devices(["reload-check-01"])
    login = subprocess.run(
        [
            "mosquitto_pub",
            *("-h", "127.0.0.1", "-p", str(settings.mqtt_port), "-u", "reload-check-01"),
            *("-P", device_password(settings, "reload-check-01")),
            *("-t", "coldtrace/v1/reload-check-01/telemetry", "-n"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (login.returncode, login.stderr) == (0, "")
    assert probe_hash() not in (None, probe_before)


def test_device_accounts_are_hashed_in_the_password_file(
    settings: Settings, services: LocalServices
) -> None:
    services.register_devices(["hash-check-01"])
    passwd = (settings.run_dir / "mosquitto" / "passwd").read_text()
    line = next(ln for ln in passwd.splitlines() if ln.startswith("hash-check-01:"))
    assert line.split(":", 1)[1].startswith("$7$")  # PBKDF2-SHA512, never the plain password
    # the owner writes, the broker's group reads (compose: group mosquitto), no one else
    assert oct(os.stat(settings.run_dir / "mosquitto" / "passwd").st_mode)[-3:] == "640"
