"""Publish a simulated fleet over MQTT, one authenticated connection per device, as vans do."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.contract import TelemetryBatch, status_topic, telemetry_topic
from coldtrace.settings import Settings
from simulators.fleet import Van, batches, make_fleet


class PublishFailed(Exception):
    pass


class DeviceConnection:
    """One device's MQTT session: QoS 1, retained status with an offline last will."""

    def __init__(
        self, settings: Settings, device: str, password: str, max_inflight: int = 100
    ) -> None:
        self.device = device
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sim-{device}", protocol=mqtt.MQTTv311
        )
        client.username_pw_set(device, password)
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)
        client.will_set(status_topic(device), b"offline", qos=1, retain=True)
        self.client = client
        self.settings = settings

    def connect(self) -> None:
        rc = self.client.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishFailed(f"{self.device}: connect failed: {mqtt.error_string(rc)}")
        self.client.loop_start()
        self.client.publish(status_topic(self.device), b"online", qos=1, retain=True)

    def publish(self, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self.client.publish(telemetry_topic(self.device), payload, qos=1)

    def close(self) -> None:
        self.client.publish(
            status_topic(self.device), b"offline", qos=1, retain=True
        ).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


def simulate(
    settings: Settings,
    password_for: Callable[[str], str],
    *,
    vehicles: int,
    readings: int,
    interval_s: float = 60.0,
    speedup: float = 60.0,
    per_batch: int = 1,
    seed: int = 1,
    prefix: str = "van",
    state_file: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Counter[str]:
    """Publish `readings` readings per van; return readings PUBACKed per device.

    Simulated time ends now, so a run shows up at once on dashboards; `speedup` compresses
    it (60: one simulated minute per second; 0: as fast as the broker takes it). With a
    state_file, each van carries on from its last run as a real device would: the next boot,
    seqs continuing upward, time continuing after its last reading. A run resumed so soon that
    its readings would lie in the future at interval_s is squeezed between its last reading
    and now instead: ingest refuses device times ahead of its clock (clock_ahead).
    """
    fleet = make_fleet(vehicles, seed, prefix=prefix)
    now_ms = int(time.time() * 1000)
    start_ms = int(now_ms - readings * interval_s * 1000)
    if state_file is not None:
        last_ms = _resume(fleet, state_file)
        if last_ms + readings * interval_s * 1000 > now_ms:
            interval_s = max(0.001, (now_ms - last_ms) / readings / 1000)
        start_ms = max(start_ms, last_ms + int(interval_s * 1000))
    conns = {
        van.device: DeviceConnection(settings, van.device, password_for(van.device))
        for van in fleet
    }
    for conn in conns.values():
        conn.connect()
    streams = {van.device: batches(van, start_ms, readings, interval_s, per_batch) for van in fleet}
    pending: list[tuple[str, int, mqtt.MQTTMessageInfo]] = []
    sent: Counter[str] = Counter()
    t0 = time.monotonic()
    step = 0
    try:
        while streams:
            for device in list(streams):
                batch = next(streams[device], None)
                if batch is None:
                    del streams[device]
                    continue
                pending.append((device, len(batch.readings), _publish(conns[device], batch)))
            step += 1
            pending = _settle(pending, sent)
            if progress:
                progress(sum(sent.values()), vehicles * readings)
            if speedup > 0:
                wait = t0 + step * per_batch * interval_s / speedup - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        _settle(pending, sent, wait=True)
    finally:
        for conn in conns.values():
            conn.close()
        if state_file is not None:
            _save(fleet, state_file, start_ms + int((readings - 1) * interval_s * 1000))
    return sent


def _save(fleet: list[Van], state_file: Path, last_ts: int) -> None:
    """Record this run's vans in the state file, keeping the vans of other runs: a run of
    fewer vans must not send the others back to boot 1, seq 1 (their next readings would
    then be conflicting duplicates of what they already sent)."""
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    state.update({van.device: {"boot": van.boot, "seq": van.seq, "ts": last_ts} for van in fleet})
    state_file.write_text(json.dumps(state, indent=1))


def _resume(fleet: list[Van], state_file: Path) -> int:
    """Load each van's last boot and seq; return the latest timestamp already sent."""
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    last_ts = 0
    for van in fleet:
        if van.device in state:
            van.boot = state[van.device]["boot"] + 1
            van.seq = state[van.device]["seq"]
            last_ts = max(last_ts, state[van.device]["ts"])
    return last_ts


def _publish(conn: DeviceConnection, batch: TelemetryBatch) -> mqtt.MQTTMessageInfo:
    return conn.publish(batch.model_dump_json(by_alias=True, exclude_defaults=True).encode())


def _settle(
    pending: list[tuple[str, int, mqtt.MQTTMessageInfo]], sent: Counter[str], wait: bool = False
) -> list[tuple[str, int, mqtt.MQTTMessageInfo]]:
    """Count the PUBACKed messages; keep the others pending."""
    still: list[tuple[str, int, mqtt.MQTTMessageInfo]] = []
    for device, n, info in pending:
        if wait:
            info.wait_for_publish(timeout=30)
        if info.is_published():
            sent[device] += n
        elif wait or info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishFailed(f"{device}: message {info.mid} not acknowledged ({info.rc})")
        else:
            still.append((device, n, info))
    return still
