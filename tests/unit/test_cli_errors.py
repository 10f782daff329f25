"""Errors the project has one line for are one line, never a traceback: each command run as a
user runs it, in a process of its own."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldtrace.devtools.services import free_port
from tests.conftest import REPO, run_coldtrace


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process (here: this one) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def one_line(stderr: str) -> str:
    """The last line of stderr, after checking no traceback came before it."""
    assert "Traceback" not in stderr, stderr
    return stderr.splitlines()[-1]


LISTEN_TAKEN = (
    "configuration error: {setting}: cannot listen on 127.0.0.1:{port} (Address already in "
    "use): stop the process that holds it, or set another port"
)
BROKER_TAKEN = (
    "error: mosquitto: port {port} on 127.0.0.1 is taken by another process; stop it, or pick "
    "another port ({setting})"
)


@pytest.mark.parametrize(
    ("command", "setting", "free", "error"),
    [
        pytest.param(("api",), "COLDTRACE_API_PORT", (), LISTEN_TAKEN, id="api"),
        # Found before ingest connects to anything (no broker runs here).
        pytest.param(
            ("ingest",), "COLDTRACE_INGEST_HEALTH_PORT", (), LISTEN_TAKEN, id="ingest-health"
        ),
        pytest.param(
            ("services", "up", "mosquitto"), "COLDTRACE_MQTT_PORT", (), BROKER_TAKEN, id="mqtt"
        ),
        # Mosquitto listens for TLS too (docs/security.md): a taken TLS port is named as well.
        pytest.param(
            ("services", "up", "mosquitto"),
            "COLDTRACE_MQTT_TLS_PORT",
            ("COLDTRACE_MQTT_PORT", "COLDTRACE_MQTT_MTLS_PORT"),
            BROKER_TAKEN,
            id="mqtt-tls",
        ),
    ],
)
def test_a_port_taken_is_named_by_its_setting(
    tmp_path: Path,
    taken_port: int,
    command: tuple[str, ...],
    setting: str,
    free: tuple[str, ...],
    error: str,
) -> None:
    """``free``: the other ports the command listens on, set to free ones."""
    ports = {name: str(free_port()) for name in free}
    proc = run_coldtrace(
        *command, **ports, **{setting: str(taken_port)}, COLDTRACE_RUN_DIR=str(tmp_path)
    )
    assert proc.returncode == 2
    assert one_line(proc.stderr) == error.format(setting=setting, port=taken_port)


def test_an_unreachable_database(tmp_path: Path) -> None:
    """A port that listens but is no PostgreSQL would hang; a closed one refuses at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    url = f"postgresql+psycopg://coldtrace:secret@127.0.0.1:{closed}/coldtrace"
    proc = run_coldtrace(
        "keys", "list", COLDTRACE_DATABASE_URL=url, COLDTRACE_RUN_DIR=str(tmp_path)
    )
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        f"error: database postgresql+psycopg://coldtrace:***@127.0.0.1:{closed}/coldtrace: "
        f'connection failed: connection to server at "127.0.0.1", port {closed} failed: '
        "Connection refused: start it (local PostgreSQL: coldtrace services up postgresql) or "
        "set COLDTRACE_DATABASE_URL"
    )


def test_a_json_setting_that_is_not_json(tmp_path: Path) -> None:
    proc = run_coldtrace(
        "ingest",
        COLDTRACE_ALERTS_DEVICE_PROFILES="{van-01: chilled}",
        COLDTRACE_RUN_DIR=str(tmp_path),
    )
    assert (proc.returncode, proc.stderr) == (
        2,
        "configuration error: COLDTRACE_ALERTS_DEVICE_PROFILES: not valid JSON (Expecting "
        "property name enclosed in double quotes: line 1 column 2 (char 1)) (got '{van-01: "
        "chilled}'): give a JSON object, see README.md, Configuration\n",
    )


def test_a_closed_pipe(tmp_path: Path) -> None:
    """`coldtrace schema | head -1`, with the reader gone before coldtrace writes a byte."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = run_coldtrace("schema", stdout=write_end, COLDTRACE_RUN_DIR=str(tmp_path))
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (1, "")


def test_simulate_with_the_broker_down(tmp_path: Path) -> None:
    """No broker listens on the port: one line naming it, no traceback."""
    closed = free_port()
    proc = run_coldtrace(
        "simulate",
        "--vehicles",
        "1",
        "--readings",
        "2",
        COLDTRACE_MQTT_PORT=str(closed),
        COLDTRACE_RUN_DIR=str(tmp_path),
    )
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        f"error: cannot reach the broker at 127.0.0.1:{closed} as van-01 (Connection refused): "
        "start it (`coldtrace services up`) or set COLDTRACE_MQTT_HOST / COLDTRACE_MQTT_PORT"
    )


def test_an_unknown_scenario_is_named_before_the_api_key_is_asked_for(tmp_path: Path) -> None:
    known = sorted(p.stem for p in (REPO / "simulators" / "scenarios").glob("*.yaml"))
    proc = run_coldtrace("simulate", "--scenario", "nosuch", COLDTRACE_RUN_DIR=str(tmp_path))
    assert proc.returncode == 2
    assert one_line(proc.stderr) == f"error: no scenario 'nosuch'; known: {', '.join(known)}"


def test_deliveries_list_of_an_unknown_state(tmp_path: Path) -> None:
    """Not an empty list, as if no delivery were in that state."""
    proc = run_coldtrace("deliveries", "list", "--state", "done", COLDTRACE_RUN_DIR=str(tmp_path))
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        "coldtrace deliveries list: error: argument --state: invalid choice: 'done' (choose "
        "from 'planned', 'in_transit', 'delivered', 'closed', 'cancelled')"
    )


def test_a_scenario_names_the_settings_it_needs_of_ingest_and_the_api(tmp_path: Path) -> None:
    """Both: the API judges certificates by the suppression windows too (restarting ingest
    alone, as the line once said, made the defrost scenario's verdict wrong)."""
    proc = run_coldtrace(
        "simulate", "--scenario", "defrost-suppressed", "--api-key", "unused",
        "--prefix", "simtest", "--start", "2026-11-30T08:00:00Z",
        COLDTRACE_RUN_DIR=str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert line.startswith(
        "error: scenario defrost-suppressed needs ingest and the API run with "
        'COLDTRACE_ALERTS_SUPPRESS_WINDOWS=\'{"simtest-van-d": [["2026-11-30T08:43:00Z", '
        "\"2026-11-30T09:12:00Z\"]]}' COLDTRACE_ALERTS_SILENT_AFTER_S='"
    )
    assert line.endswith(
        "(and this command with the same; the API judges certificates by them): restart both "
        "so, then run again with --prefix simtest --start 2026-11-30T08:00:00Z"
    )


def test_https_files_that_cannot_be_loaded(tmp_path: Path) -> None:
    """Found before the API starts (uvicorn raised a bare FileNotFoundError, a traceback)."""
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    proc = run_coldtrace(
        "api",
        COLDTRACE_API_PORT=str(free_port()),
        COLDTRACE_API_TLS_CERTFILE=str(cert),
        COLDTRACE_API_TLS_KEYFILE=str(key),
        COLDTRACE_RUN_DIR=str(tmp_path),
    )
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        f"configuration error: COLDTRACE_API_TLS_CERTFILE / _KEYFILE: cannot load {cert} with "
        f"{key} (No such file or directory): give the server's PEM certificate and its private "
        "key"
    )


@pytest.mark.parametrize("batch", ["0", "501"])
def test_simulate_batches_the_contract_does_not_take(tmp_path: Path, batch: str) -> None:
    """Refused before anything is published (501 failed building the batch: a traceback)."""
    proc = run_coldtrace("simulate", "--batch", batch, COLDTRACE_RUN_DIR=str(tmp_path))
    assert proc.returncode == 2
    assert one_line(proc.stderr) == (
        f"coldtrace simulate: error: argument --batch: '{batch}': give 1 to 500 readings per "
        "message"
    )
