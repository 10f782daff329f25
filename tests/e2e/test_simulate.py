"""`coldtrace simulate`'s vans keep every reading until ingest acknowledges it (contract v1.1),
against the real broker and ingest: a broker killed mid-run loses nothing, and what ingest
did not acknowledge (it was not running) is kept in the state file and delivered by the next
run, also when the run was interrupted. Each device's books end exact: sent = stored, nothing
rejected or missing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path
from typing import Any

from coldtrace.devtools.services import LocalServices, device_password
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings
from ingest.books import load_books
from simulators.publish import Tally, simulate
from tests.conftest import (
    REPO,
    discard_ingest_session,
    run_coldtrace,
    stored_count,
    stored_seqs,
    wait_for,
)


def run(settings: Settings, prefix: str, state: Path, **kw: Any) -> list[Tally]:
    LocalServices(settings).register_devices(f"{prefix}-{i:02d}" for i in (1, 2))
    return simulate(
        settings,
        partial(device_password, settings),
        per_batch=2,
        prefix=prefix,
        state_file=state,
        **kw,
    )


def books(influx: InfluxClient, device: str) -> tuple[int, int, int, int]:
    b = load_books(influx, device)
    assert b.agrees
    return b.sent, b.stored, b.rejected, b.missing


def test_a_broker_killed_mid_run_loses_nothing(
    settings: Settings,
    services: LocalServices,
    influx: InfluxClient,
    start_ingest: Any,
    prefix: str,
    tmp_path: Path,
) -> None:
    start_ingest()
    out: list[list[Tally]] = []
    # 200 readings per van, 2 a message every 40 ms: about 4 s of publishing
    sim = threading.Thread(
        target=lambda: out.append(
            run(
                settings,
                prefix,
                tmp_path / "state.json",
                vehicles=2,
                readings=200,
                interval_s=1.0,
                speedup=50,
                ack_timeout_s=60,
            )
        )
    )
    sim.start()
    wait_for(lambda: stored_count(influx, f"^{prefix}") >= 100, 30, "100 readings stored")
    assert sim.is_alive()  # still publishing (or waiting for acks): the kill is mid-run
    services.stop("mosquitto", signal.SIGKILL)
    services.start("mosquitto")
    sim.join(90)
    assert not sim.is_alive()
    assert out == [[Tally(f"{prefix}-{i:02d}", 200, 0, 200, 0) for i in (1, 2)]]
    for i in (1, 2):
        assert stored_seqs(influx, f"{prefix}-{i:02d}") == list(range(1, 201))
        assert books(influx, f"{prefix}-{i:02d}") == (200, 200, 0, 0)
    state = json.loads((tmp_path / "state.json").read_text())
    assert [state[f"{prefix}-{i:02d}"]["pending"] for i in (1, 2)] == [[], []]


def test_readings_not_acknowledged_are_kept_and_the_next_run_delivers_them(
    settings: Settings, influx: InfluxClient, start_ingest: Any, prefix: str, tmp_path: Path
) -> None:
    """No ingest: everything stays pending, in the state file. The broker then loses what it
    queued for ingest (its session discarded); the next run, of one van only, sends both
    vans' kept readings first, then its own: all stored once."""
    discard_ingest_session(settings)
    state = tmp_path / "state.json"
    first = run(settings, prefix, state, vehicles=2, readings=20, speedup=0, ack_timeout_s=1)
    assert first == [Tally(f"{prefix}-{i:02d}", 20, 0, 0, 20) for i in (1, 2)]
    kept = json.loads(state.read_text())
    assert [[(h["first"], h["last"]) for h in kept[f"{prefix}-01"]["pending"]]] == [
        [(s, s + 1) for s in range(1, 21, 2)]
    ]
    assert stored_count(influx, f"^{prefix}") == 0

    start_ingest()  # discards ingest's session: what the broker queued for it is gone
    second = run(settings, prefix, state, vehicles=1, readings=5, speedup=0, ack_timeout_s=60)
    assert second == [
        Tally(f"{prefix}-01", 25, 20, 25, 0),
        Tally(f"{prefix}-02", 20, 20, 20, 0),
    ]
    assert stored_seqs(influx, f"{prefix}-01") == list(range(1, 26))
    assert stored_seqs(influx, f"{prefix}-02") == list(range(1, 21))
    assert books(influx, f"{prefix}-01") == (25, 25, 0, 0)
    assert books(influx, f"{prefix}-02") == (20, 20, 0, 0)
    kept = json.loads(state.read_text())
    assert [kept[f"{prefix}-{i:02d}"]["pending"] for i in (1, 2)] == [[], []]
    assert kept[f"{prefix}-02"]["seq"] == 20  # not part of the second run's fleet: unchanged


def test_an_interrupted_run_keeps_what_it_sent_and_the_next_run_delivers_it(
    settings: Settings, influx: InfluxClient, start_ingest: Any, prefix: str
) -> None:
    """`coldtrace simulate` stopped (SIGTERM, as Ctrl-C) mid-run while no ingest runs: one
    line says how many readings it keeps; the state file holds every one sent, each van's seq
    is its last sent; the next run, with ingest, delivers them and carries on from there."""
    discard_ingest_session(settings)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COLDTRACE_")},
        "COLDTRACE_RUN_DIR": str(settings.run_dir),
        "COLDTRACE_MQTT_PORT": str(settings.mqtt_port),
    }
    vans = ["--prefix", prefix, "--vehicles", "2"]
    long_run = ["--readings", "600", "--interval", "1", "--speedup", "20"]  # 20 a second: 30 s
    proc = subprocess.Popen(
        [sys.executable, "-m", "coldtrace.cli", "simulate", *vans, *long_run],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the progress line of its first step
    assert first == "    acknowledged 0/1200 readings (0%)\n", first
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (130, "")
    path = settings.run_dir / "simulator-state.json"
    said = re.fullmatch(
        r"interrupted: (\d+) readings not yet acknowledged by ingest kept in "
        + re.escape(str(path))
        + r"; the next `coldtrace simulate` sends them first\n",
        err,
    )
    assert said, err
    state = json.loads(path.read_text())
    sent = {d: state[d]["seq"] for d in (f"{prefix}-01", f"{prefix}-02")}
    assert 0 < sum(sent.values()) == int(said[1]) < 1200
    for device, seq in sent.items():
        assert [(h["first"], h["last"]) for h in state[device]["pending"]] == [
            (s, s) for s in range(1, seq + 1)
        ]

    start_ingest()
    again = run_coldtrace("simulate", *vans, "--readings", "5", "--speedup", "0", "--json", **env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == [
        {"device": d, "sent": n + 5, "carried_over": n, "acknowledged": n + 5, "pending": 0}
        for d, n in sent.items()
    ]
    for device, n in sent.items():
        assert stored_seqs(influx, device) == list(range(1, n + 6))
        assert books(influx, device) == (n + 5, n + 5, 0, 0)
