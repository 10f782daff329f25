"""`coldtrace demo` as `make demo` runs it, twice in a row with `coldtrace simulate
--vehicles 1` in between (no ingest running: its readings kept for the next simulation), on
the session's Mosquitto and InfluxDB: every round loses nothing,
and the story ends as its scenario (simulators/scenarios/demo.yaml) says: vans 3 and 7 not
compliant, the ten others compliant, every check against the ground truth as expected."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

from coldtrace.certificates.document import extract_signed_json
from coldtrace.devtools.ingest_process import IngestProcess
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings
from ingest.books import load_books
from tests.conftest import discard_ingest_session, run_coldtrace, stored_seqs


def demo_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        "COLDTRACE_RUN_DIR": str(settings.run_dir),  # where the session's services run
        "COLDTRACE_MQTT_PORT": str(settings.mqtt_port),
        "COLDTRACE_INFLUX_URL": settings.influx_url,
        "COLDTRACE_INFLUX_DATABASE": settings.influx_database,
        "COLDTRACE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
    }


def deliveries(out: str) -> dict[str, tuple[str, str, int]]:
    """van (without its round) -> (customer, verdict, breaches), from the deliveries table."""
    found = {}
    for line in out.splitlines():
        if "/api/v1/deliveries/" in line and not line.lstrip().startswith("curl"):
            _, customer, van, _, _, _, verdict, breaches, _ = re.split(r"\s{2,}", line.strip())
            found[van.split("-", 1)[1]] = (customer, verdict, int(breaches))
    return found


def run_demo(env: dict[str, str]) -> str:
    proc = run_coldtrace("demo", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def simulate_one_van(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return run_coldtrace(
        "simulate", "--vehicles", "1", "--readings", "5", "--speedup", "0", *options, **env
    )


def test_the_demo_twice_and_after_a_one_van_simulation_loses_nothing(
    settings: Settings,
    tmp_path: Path,
    influx: InfluxClient,
    start_ingest: Callable[..., IngestProcess],
) -> None:
    """Between the rounds, `coldtrace simulate` runs while no ingest does: nothing can
    acknowledge its van's readings, so it keeps them, says so and exits 3; the next
    simulation, with ingest running, delivers them first: the van's books exact."""
    env = demo_env(settings, tmp_path)
    discard_ingest_session(settings)  # what earlier tests left queued is not the demo's
    rounds = [run_demo(env)]
    simulated = simulate_one_van(env, "--ack-timeout", "2", "--json")
    assert simulated.returncode == 3, simulated.stderr
    assert json.loads(simulated.stdout) == [
        {"device": "van-01", "sent": 5, "carried_over": 0, "acknowledged": 0, "pending": 5}
    ]
    assert simulated.stderr == (
        "5 readings not yet acknowledged by ingest within 2 s (is `coldtrace ingest` "
        f"running?); kept in {settings.run_dir / 'simulator-state.json'}; the next "
        "`coldtrace simulate` sends them first\n"
    )
    rounds.append(run_demo(env))

    start_ingest()
    simulated = simulate_one_van(env)
    assert simulated.returncode == 0, simulated.stderr
    assert simulated.stdout.splitlines() == [
        "DEVICE  SENT  CARRIED_OVER  ACKNOWLEDGED  PENDING",
        "van-01    10             5            10        0",
    ]
    books = load_books(influx, "van-01")
    assert (books.sent, books.stored, books.rejected, books.missing) == (10, 10, 0, 0)
    assert stored_seqs(influx, "van-01") == list(range(1, 11))

    caterer, lab = "Traiteur Bellecour", "Hospices Civils de Lyon, biology lab"
    for out in rounds:
        assert "sent 1030 readings = stored 1030 + held 0 + rejected 0 + missing 0; lost 0" in out
        found = deliveries(out)
        assert sorted(found) == [f"van-{i:02d}" for i in range(1, 13)]
        assert found["van-03"] == (caterer, "not_compliant", 4)
        assert found["van-07"] == (lab, "not_compliant", 2)
        assert all(
            (verdict, breaches) == ("compliant", 0)
            for van, (_, verdict, breaches) in found.items()
            if van not in ("van-03", "van-07")
        )
        assert "verdicts: 10 compliant, 2 not_compliant" in out
        assert "34 checks, all as expected" in out  # with ingest's and the API's health
        assert re.search(r'curl -H "Authorization: Bearer ct_\S+" http://127\.0\.0\.1:8000/', out)
        get = re.search(r"\n  \.venv/bin/coldtrace certificates get (\d+) -o cert\.pdf ", out)
        assert get, out[-1500:]
        # as printed: van 3's (the caterer's: in French), whose signed JSON it carries
        pdf = tmp_path / "cert.pdf"
        got = run_coldtrace("certificates", "get", get.group(1), "-o", str(pdf), **env)
        assert got.returncode == 0, got.stderr
        signed = json.loads(extract_signed_json(pdf.read_bytes()))
        assert (signed["body"]["vehicle_id"][-6:], signed["verdict"]) == ("van-03", "not_compliant")
        assert signed["body"]["customer"]["language"] == "fr"
        # how to see it in Grafana: the push, and van-03's delivery (4 breaches) on its
        # Delivery dashboard, as the API links it
        assert "coldtrace dashboards push --url http://localhost:3000 --token <service" in out
        assert re.search(
            r"open delivery \d+'s Delivery dashboard:\n  http://localhost:3000/d/coldtrace-delivery"
            r"/delivery\?orgId=1&from=\d+&to=\d+&var-vehicle=demo\d+-van-03&var-compartment=\w+"
            r"&var-device=demo\d+-van-03(&var-probe=\w+)+&var-low_c=[-\d.]+&var-high_c=[-\d.]+\n",
            out,
        ), out[-1500:]
    # Each round has boxes (and deliveries) of its own.
    assert "demo1-van-01" in rounds[0] and "demo2-van-01" in rounds[1]
    # The customers' certificates in their language and Lyon's time (were all English, UTC).
    with sqlite3.connect(tmp_path / "demo.db") as db:
        bodies = [json.loads(body) for (body,) in db.execute("SELECT body FROM certificate")]
    assert len(bodies) == 24
    assert {(b["customer_id"], b["customer"]["language"], b["timezone"]) for b in bodies} == {
        (f"demo{n}-{customer}", language, "Europe/Paris")
        for n in (1, 2)
        for customer, language in (("traiteur", "fr"), ("hcl-lab", "en"), ("cantine", "fr"))
    }


def test_the_demo_refuses_to_start_beside_a_running_ingest(
    settings: Settings, tmp_path: Path, start_ingest: Callable[..., IngestProcess]
) -> None:
    """Its own ingest would take the running one's MQTT session: it says so, in one line."""
    running = start_ingest()
    env = demo_env(settings, tmp_path)  # the same account, so the same session
    proc = run_coldtrace("demo", **env)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        f"error: ingest already running (pid {running.pid}): the demo runs its own ingest; "
        f"stop that one (kill {running.pid}), then run the demo again\n"
    )
