"""Ingest's /health and /metrics with the rules stage, the service in this process against
the real Mosquitto and InfluxDB."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from coldtrace.services import free_port
from coldtrace.settings import Settings
from ingest.service import IngestService
from tests.conftest import put_on_delivery, wait_for


def test_health_fails_when_the_rules_stage_thread_ends(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    service = IngestService(
        settings.model_copy(
            update={
                "mqtt_client_id": f"ingest-{uuid.uuid4().hex[:8]}",
                "ingest_health_port": port,
                "database_url": f"sqlite:///{tmp_path / 'ingest.db'}",
                "alerts_default_profile": "chilled",
            }
        )
    )
    assert service.rules is not None
    service.start()
    try:
        health = f"http://127.0.0.1:{port}/health"
        wait_for(lambda: httpx.get(health).status_code == 200, what="healthy ingest")
        assert httpx.get(health).json()["rules_alive"] is True
        metrics = f"http://127.0.0.1:{port}/metrics"
        assert "coldtrace_alerts_up 1\n" in httpx.get(metrics).text

        service.rules.stopping.set()  # its thread ends, as one that died would
        service.rules.thread.join(timeout=10)
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
    port = free_port()
    database_url = f"sqlite:///{tmp_path / 'ingest.db'}"
    service = IngestService(
        settings.model_copy(
            update={
                "mqtt_client_id": f"ingest-{uuid.uuid4().hex[:8]}",
                "ingest_health_port": port,
                "database_url": database_url,
                "alerts_default_profile": None,
                "alerts_device_profiles": {},
            }
        )
    )
    assert service.rules is None
    service.start()
    try:
        health = f"http://127.0.0.1:{port}/health"
        wait_for(lambda: httpx.get(health).status_code == 200, what="healthy ingest")
        assert "rules_alive" not in httpx.get(health).json()
        assert service.switch_rules_on() is False

        put_on_delivery(database_url, f"van-{uuid.uuid4().hex[:6]}", 1_790_000_000_000)
        assert service.switch_rules_on() is True
        body = httpx.get(health).json()
        assert (body["status"], body["rules_alive"]) == ("ok", True)
    finally:
        service.shutdown()
