"""`coldtrace demo` as `make demo` runs it, twice in a row with `coldtrace simulate
--vehicles 1` in between, on the session's Mosquitto and InfluxDB: every round loses nothing,
and the story ends the same way (vans 3 and 7 not compliant, the ten others compliant)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from coldtrace.settings import Settings
from tests.conftest import run_coldtrace

VERDICT_LINE = re.compile(
    r"^\s+(\d+)\s+(\S+)\s+(demo\d+-van-\d\d)\s+(\S+)\s.*\s(\S+)\s+(\d+)\s+/api"
)


def demo_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        "COLDTRACE_RUN_DIR": str(settings.run_dir),  # where the session's services run
        "COLDTRACE_MQTT_PORT": str(settings.mqtt_port),
        "COLDTRACE_INFLUX_URL": settings.influx_url,
        "COLDTRACE_INFLUX_DATABASE": settings.influx_database,
        "COLDTRACE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "COLDTRACE_MQTT_CLIENT_ID": f"demo-{uuid.uuid4().hex[:8]}",
    }


def verdicts(out: str) -> dict[str, tuple[str, str, int]]:
    """van (without its round) -> (customer, verdict, breaches), from the deliveries table."""
    found = {}
    for line in out.splitlines():
        m = VERDICT_LINE.match(line)
        if m:
            found[m.group(3).split("-", 1)[1]] = (m.group(2), m.group(5), int(m.group(6)))
    return found


def run_demo(env: dict[str, str]) -> str:
    proc = run_coldtrace("demo", "--speedup", "1000", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_the_demo_twice_and_after_a_one_van_simulation_loses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    env = demo_env(settings, tmp_path)
    rounds = [run_demo(env)]
    simulated = run_coldtrace(
        "simulate", "--vehicles", "1", "--readings", "5", "--speedup", "0", **env
    )
    assert simulated.returncode == 0, simulated.stderr
    rounds.append(run_demo(env))

    expected = {f"van-{i:02d}": "compliant" for i in range(1, 13)}
    expected["van-03"] = expected["van-07"] = "not_compliant"
    for out in rounds:
        sent = int(re.search(r"^sent (\d+) readings", out, re.M).group(1))  # type: ignore[union-attr]
        assert f"sent {sent} readings = stored {sent} + rejected 0 + missing 0; lost 0" in out
        found = verdicts(out)
        assert {van: v for van, (_, v, _) in found.items()} == expected
        assert found["van-03"][0] == "traiteur-bellecour"
        assert found["van-07"][0] == "hcl-biology-lab"
        assert all(n == 0 for van, (_, v, n) in found.items() if v == "compliant")
        assert "verdicts: 10 compliant, 2 not_compliant" in out
        assert re.search(
            r'curl -H "Authorization: Bearer ct_\S+" http://127.0.0.1:8000/api/v1/', out
        )
    # Each round has vans (and deliveries) of its own.
    assert "demo1-van-01" in rounds[0] and "demo2-van-01" in rounds[1]
