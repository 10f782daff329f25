"""Ingest's /health and /metrics with the rules stage, the service in this process against
the real Mosquitto and InfluxDB."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from alerts.stage import RulesObserver
from coldtrace.bootstrap import ingest_service
from coldtrace.devtools.services import free_port
from coldtrace.settings import Settings
from ingest.service import IngestService
from tests.conftest import Api, Devices, put_on_delivery, wait_for


def ingest_here(settings: Settings, tmp_path: Path, **update: object) -> tuple[IngestService, str]:
    """`coldtrace ingest` in this process, not started: a health port of its own, its
    held-readings db in `tmp_path`, the settings `update`d; and its base URL (/health,
    /metrics)."""
    port = free_port()
    service = ingest_service(
        settings.model_copy(
            update={
                "ingest_health_port": port,
                "database_url": f"sqlite:///{tmp_path / 'ingest.db'}",
                **update,
            }
        )
    )
    return service, f"http://127.0.0.1:{port}"


def test_health_fails_when_the_rules_stage_thread_ends(settings: Settings, tmp_path: Path) -> None:
    service, base = ingest_here(settings, tmp_path, alerts_default_profile="chilled")
    (rules,) = service.observers
    assert isinstance(rules, RulesObserver) and rules.stage is not None
    service.start()
    try:
        health = f"{base}/health"
        wait_for(lambda: httpx.get(health).status_code == 200, what="healthy ingest")
        assert httpx.get(health).json()["rules_alive"] is True
        metrics = f"{base}/metrics"
        assert "coldtrace_alerts_up 1\n" in httpx.get(metrics).text

        rules.stage.runner.stopping.set()  # its thread ends, as one that died would
        rules.stage.runner.thread.join(timeout=10)
        r = httpx.get(health)
        assert r.status_code == 503
        assert (r.json()["status"], r.json()["rules_alive"]) == ("failing", False)
        assert "coldtrace_alerts_up 0\n" in httpx.get(metrics).text
        assert "coldtrace_ingest_up 0\n" in httpx.get(metrics).text
    finally:
        service.shutdown()


def test_the_rules_stage_starts_once_a_probe_is_assigned(
    settings: Settings, tmp_path: Path
) -> None:
    """No profile in the settings and nothing assigned: no rules stage. The first assignment,
    made while ingest runs, switches it on without a restart."""
    service, base = ingest_here(
        settings, tmp_path, alerts_default_profile=None, alerts_device_profiles={}
    )
    database_url = service.settings.database_url
    (rules,) = service.observers
    assert isinstance(rules, RulesObserver) and rules.stage is None
    service.start()
    try:
        health = f"{base}/health"
        wait_for(lambda: httpx.get(health).status_code == 200, what="healthy ingest")
        assert "rules_alive" not in httpx.get(health).json()
        assert rules.switch_on() is False

        put_on_delivery(database_url, f"van-{uuid.uuid4().hex[:6]}", 1_790_000_000_000)
        assert rules.switch_on() is True
        body = httpx.get(health).json()
        assert (body["status"], body["rules_alive"]) == ("ok", True)
    finally:
        service.shutdown()


def test_health_names_a_probe_the_rules_stage_quarantined(
    settings: Settings, tmp_path: Path, devices: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error injected into the judging of one probe: ingest's /health answers 503 naming
    it, the metrics count it, the device's other probe is judged all the same, and the API
    told where ingest is shows it in its /health and its fleet view."""
    service, base = ingest_here(settings, tmp_path, alerts_default_profile="chilled")
    database_url = service.settings.database_url
    (rules,) = service.observers
    assert isinstance(rules, RulesObserver) and rules.stage is not None
    judge = rules.stage._judge

    def broken(device: str, key: str, samples: list[object]) -> None:
        if key == "air":
            raise RuntimeError("injected")
        judge(device, key, samples)  # type: ignore[arg-type]

    monkeypatch.setattr(rules.stage, "_judge", broken)
    device = f"van-{uuid.uuid4().hex[:6]}"
    put_on_delivery(database_url, device, 1_790_000_000_000)  # product on the van's compartment
    now = int(time.time() * 1000)
    readings = [
        {"seq": i, "ts": now - (10 - i) * 60_000, "up": i, "probes": {"air": 3.0, "product": 3.0}}
        for i in range(10)
    ]
    service.start()
    try:
        health = f"{base}/health"
        wait_for(lambda: httpx.get(health).status_code == 200, what="healthy ingest")
        devices.publish(
            device, [json.dumps({"device": device, "boot": 1, "readings": readings}).encode()]
        )
        metrics = f"{base}/metrics"
        evaluated = "coldtrace_alerts_readings_evaluated_total 10\n"
        wait_for(lambda: evaluated in httpx.get(metrics).text, what="the batch judged")
        body = httpx.get(health).json()
        assert (body["status"], body["rules_judging"]) == ("failing", False)
        assert body["reasons"] == [
            "rules_judging",
            f"rules: {device}/air quarantined: RuntimeError: injected",
        ]
        assert httpx.get(health).status_code == 503
        assert "coldtrace_alerts_quarantined_probes 1\n" in httpx.get(metrics).text
        assert rules.stage.judges.engines.keys() == {(device, "product")}

        api = Api(
            settings.model_copy(
                update={
                    "database_url": database_url,
                    "ingest_health_url": base,
                }
            )
        )
        try:
            r = api.client.get("/api/v1/health")
            assert (r.status_code, r.json()["ingest"], r.json()["reasons"]) == (
                503,
                "failing",
                ["rules_judging", f"rules: {device}/air quarantined: RuntimeError: injected"],
            )
            (van,) = api.ok("GET", "/fleet")
            assert (van["vehicle_id"], van["unjudged_probes"]) == (
                f"{device}-vehicle",
                [f"{device}/air"],
            )
        finally:
            api.close()
    finally:
        service.shutdown()
    api = Api(settings.model_copy(update={"database_url": database_url, "ingest_health_url": base}))
    try:  # ingest gone: the API says so
        r = api.client.get("/api/v1/health")
        assert (r.status_code, r.json()["ingest"]) == (503, "unreachable")
        assert r.json()["reasons"][0].startswith(f"ingest unreachable at {base}/health")
    finally:
        api.close()
