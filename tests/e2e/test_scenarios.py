"""Every ground-truth scenario (simulators/scenarios/*.yaml) through the real pipeline:
Mosquitto, ingest with its rules stage, InfluxDB, the store (SQLite) and `coldtrace api` as a
process, driven as `coldtrace simulate --scenario` drives them (simulators.runner). Each must
find exactly the breaches the scenario expects (zero missed, zero spurious, the same start,
end within one sampling interval, severity and suppression), its data gaps and the exact
certificate verdicts, the live breaches of each delivery must be its certificate's, and
ingest and the API must be healthy after each.

Scenarios are placed on the wall clock once (ending before now, time compressed: readings
are published as fast as the broker takes them with past device times), so that ingest
starts with the settings they need (a van's settings profile, a defrost window).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import yaml

from coldtrace.cli.output import table
from coldtrace.db import upgrade
from coldtrace.devtools.api_process import ApiProcess
from coldtrace.devtools.services import device_password
from coldtrace.profiles import load_profiles
from coldtrace.settings import Settings
from simulators import scenario
from simulators.runner import Runner
from tests.conftest import discard_ingest_session, ingest_process, run_coldtrace
from tests.e2e.test_delivery_trace import cli_env

# The API's close grace period: a delivery closed before its last readings arrived (the
# tunnel) was delivered at least this long ago.
CLOSE_GRACE_S = 3600
NAMES = scenario.names()


@dataclass
class Pipeline:
    runner: Runner
    placed: dict[str, scenario.Placed]
    env: dict[str, str]  # what `coldtrace simulate --scenario` needs to reach the pipeline


@pytest.fixture(scope="module")
def pipeline(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("scenarios")
    store = f"sqlite:///{workdir / 'store.db'}"
    upgrade(store)
    run = "s" + uuid.uuid4().hex[:6]
    profiles = load_profiles()
    now_ms = int(time.time() * 1000)
    placed = {
        name: scenario.place(
            scenario.load(name), f"{run}{i}", profiles, now_ms, CLOSE_GRACE_S * 1000
        )
        for i, name in enumerate(NAMES)
    }
    # The rules settings are the pipeline's, ingest's and the API's alike: the API judges
    # certificates by them (a defrost window holds for both). The silence is set longer than
    # the readings' lag behind the wall clock (simulators.scenario.silent_after_s).
    alerts = scenario.ingest_settings(list(placed.values()), now_ms)
    discard_ingest_session(settings)  # what earlier tests left queued is not the scenarios'
    ingest = ingest_process(settings, workdir, COLDTRACE_DATABASE_URL=store, **alerts).start()
    api_env = {**cli_env(settings, store), **alerts, "COLDTRACE_CLOSE_GRACE_S": str(CLOSE_GRACE_S)}
    api = ApiProcess(api_env, workdir / "api.log").start()
    mine = settings.model_copy(update={"ingest_health_port": ingest.health_port})
    runner = Runner(mine, api.base, api.key, lambda d: device_password(settings, d))
    cli = {
        "COLDTRACE_RUN_DIR": str(settings.run_dir),
        "COLDTRACE_MQTT_PORT": str(settings.mqtt_port),
        "COLDTRACE_INFLUX_URL": settings.influx_url,
        "COLDTRACE_INFLUX_DATABASE": settings.influx_database,
        "COLDTRACE_INGEST_HEALTH_PORT": str(ingest.health_port),
        "COLDTRACE_API_KEY": api.key,
        # the settings it checks are the pipeline's
        "COLDTRACE_ALERTS_SILENT_AFTER_S": alerts["COLDTRACE_ALERTS_SILENT_AFTER_S"],
    }
    try:
        yield Pipeline(runner, placed, {**cli, "api": api.base})
    finally:
        runner.close()
        api.stop()
        ingest.stop()


@pytest.mark.parametrize("name", NAMES)
def test_scenario(pipeline: Pipeline, name: str) -> None:
    report = pipeline.runner.run(pipeline.placed[name])
    kinds = {c.check for c in report.checks}
    assert {"verdict", "agreement"} <= kinds, "nothing was compared"
    shown = table([asdict(c) for c in report.checks])
    assert not report.mismatches, f"{name} (t+0 = {report.start}):\n{shown}"


def test_simulate_scenario_prints_expected_against_found_and_exits_1_on_a_mismatch(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    env = dict(pipeline.env)
    api = env.pop("api")
    good = run_coldtrace("simulate", "--scenario", "blip-under-delay", "--api", api, **env)
    assert good.returncode == 0, good.stderr
    assert "all as expected" in good.stdout
    assert "verdict    BL-1" in good.stdout and "compliant" in good.stdout

    # The same van with a breach and a verdict that are not what the pipeline finds.
    sc = scenario.load("blip-under-delay")
    wrong = sc.expected.model_copy(
        update={
            "verdicts": {"BL-1": "not_compliant"},
            "breaches": [
                scenario.ExpectedBreach(
                    van="van-c",
                    probe="air",
                    rule="excursion_high",
                    start_min=47.95,
                    end_min=53.95,
                    severity="major",
                )
            ],
        }
    )
    path = tmp_path / "blip-wrong.yaml"
    path.write_text(
        yaml.safe_dump(sc.model_copy(update={"expected": wrong}).model_dump(mode="json"))
    )
    bad = run_coldtrace("simulate", "--scenario", str(path), "--json", "--api", api, **env)
    assert bad.returncode == 1, bad.stderr
    report = json.loads(bad.stdout)
    assert report["mismatches"] == 2
    assert [(c["check"], c["subject"], c["found"], c["result"]) for c in report["checks"]] == [
        ("breach", "van-c/air excursion_high", "-", "MISSED"),
        ("verdict", "BL-1", "compliant", "WRONG"),
        ("agreement", "BL-1", "0 the same", "ok"),
        ("health", "ingest", "ok", "ok"),
        ("health", "api", "ok", "ok"),
    ]
