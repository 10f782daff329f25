"""`coldtrace simulate`'s vans keep every reading until ingest acknowledges it (contract v1.1),
against the real broker and ingest: a broker killed mid-run loses nothing, and what ingest
did not acknowledge (it was not running) is kept in the state file and delivered by the next
run, also when the run was interrupted or killed with SIGKILL. Each device's books end exact:
sent = stored, nothing rejected or missing."""

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

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.devtools.services import LocalServices, device_password
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings
from ingest.books import load_books
from simulators.publish import Tally, simulate
from tests.conftest import (
    REPO,
    discard_ingest_session,
    monitor_login,
    rejections,
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


def simulate_in_background(
    settings: Settings, prefix: str, **popen: Any
) -> tuple[subprocess.Popen[Any], dict[str, str], list[str]]:
    """`coldtrace simulate` of two vans, 600 readings each at 20 a second (30 s), as a process
    of its own: the process, its environment and its vans' arguments (for the next run)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COLDTRACE_")},
        "COLDTRACE_RUN_DIR": str(settings.run_dir),
        "COLDTRACE_MQTT_PORT": str(settings.mqtt_port),
    }
    vans = ["--prefix", prefix, "--vehicles", "2"]
    long_run = ["--readings", "600", "--interval", "1", "--speedup", "20"]
    argv = [sys.executable, "-m", "coldtrace.cli", "simulate", *vans, *long_run]
    return subprocess.Popen(argv, env=env, cwd=REPO, **popen), env, vans


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
    progress: list[tuple[int, int]] = []

    def record(done: int, total: int) -> None:
        progress.append((done, total))

    first = run(
        settings,
        prefix,
        state,
        vehicles=2,
        readings=20,
        speedup=0,
        ack_timeout_s=1,
        progress=record,
    )
    assert first == [Tally(f"{prefix}-{i:02d}", 20, 0, 0, 20) for i in (1, 2)]
    assert progress[-1] == (0, 40)
    kept = json.loads(state.read_text())
    assert [[(h["first"], h["last"]) for h in kept[f"{prefix}-01"]["pending"]]] == [
        [(s, s + 1) for s in range(1, 21, 2)]
    ]
    assert stored_count(influx, f"^{prefix}") == 0

    start_ingest()  # discards ingest's session: what the broker queued for it is gone
    progress.clear()
    second = run(
        settings,
        prefix,
        state,
        vehicles=1,
        readings=5,
        speedup=0,
        ack_timeout_s=60,
        progress=record,
    )
    # the last count is taken after the acks: `coldtrace simulate` ended on "0/45 (0%)"
    assert progress[-1] == (45, 45)
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
    proc, env, vans = simulate_in_background(
        settings, prefix, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
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


class Sent:
    """What devices publish, as the broker's read-only monitor account sees it: the highest
    seq each device (of a prefix) has sent so far."""

    def __init__(self, settings: Settings, prefix: str) -> None:
        self.prefix = prefix
        self.high: dict[str, int] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(*monitor_login(settings))
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe("coldtrace/v1/+/telemetry", qos=1)
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()
        assert subscribed.wait(10), "the monitor could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        batch = json.loads(msg.payload)
        if batch["device"].startswith(self.prefix):
            top = max(r["seq"] for r in batch["readings"])
            self.high[batch["device"]] = max(top, self.high.get(batch["device"], 0))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_run_killed_with_sigkill_loses_nothing_and_the_next_run_reuses_no_seq(
    settings: Settings, influx: InfluxClient, start_ingest: Any, prefix: str
) -> None:
    """`coldtrace simulate` SIGKILLed mid-run, after it sent readings ingest never stored
    (ingest stopped, then what the broker queued for it discarded): the state file, written
    before each send, holds them and each van's seq at or above any it sent; the next run
    sends them first and carries on above: every seq stored once, books exact, no dead
    letter (a reused seq would be a conflicting duplicate)."""
    ingest = start_ingest()
    sent = Sent(settings, prefix)
    proc, env, vans = simulate_in_background(
        settings, prefix, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    names = [f"{prefix}-01", f"{prefix}-02"]
    try:
        wait_for(lambda: stored_count(influx, f"^{prefix}") >= 40, 30, "40 readings stored")
        ingest.stop()  # its session queues what the vans send from now on
        before = dict(sent.high)
        wait_for(
            lambda: all(sent.high.get(d, 0) >= before.get(d, 0) + 10 for d in names),
            30,
            "10 more readings a van sent while ingest is down",
        )
        assert proc.poll() is None  # mid-run
    finally:
        proc.kill()
        proc.wait()
        sent.close()
    discard_ingest_session(settings)  # those readings are now only in the vans' outboxes

    state = json.loads((settings.run_dir / "simulator-state.json").read_text())
    made = {d: state[d]["seq"] for d in names}
    kept = {d: [(h["first"], h["last"]) for h in state[d]["pending"]] for d in names}
    for d in names:
        stored = stored_seqs(influx, d)
        outbox = {s for first, last in kept[d] for s in range(first, last + 1)}
        assert sent.high[d] <= made[d]  # no seq it sent lies above its recorded seq
        assert stored == list(range(1, len(stored) + 1))
        assert outbox >= set(range(len(stored) + 1, made[d] + 1))  # every one not stored
        assert len(stored) < sent.high[d]  # sent and not stored: only in the outbox

    start_ingest()
    again = run_coldtrace("simulate", *vans, "--readings", "5", "--speedup", "0", "--json", **env)
    assert again.returncode == 0, again.stderr
    carried = {d: sum(last - first + 1 for first, last in kept[d]) for d in names}
    assert json.loads(again.stdout) == [
        {
            "device": d,
            "sent": carried[d] + 5,
            "carried_over": carried[d],
            "acknowledged": carried[d] + 5,
            "pending": 0,
        }
        for d in names
    ]
    for d in names:
        assert stored_seqs(influx, d) == list(range(1, made[d] + 6))
        assert books(influx, d) == (made[d] + 5, made[d] + 5, 0, 0)
        assert rejections(influx, d) == []
