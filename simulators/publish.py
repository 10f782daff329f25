"""Publish a simulated fleet over MQTT, one authenticated connection per device, as vans do."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from coldtrace.contract import Ack, TelemetryBatch, ack_topic, status_topic, telemetry_topic
from coldtrace.settings import Settings
from simulators.fleet import Van, batches, make_fleet

log = logging.getLogger(__name__)


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
        """Connect, or raise PublishFailed with the one line that says what to do."""
        host, port = self.settings.mqtt_host, self.settings.mqtt_port
        try:
            rc = self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            rc, why = mqtt.MQTT_ERR_NO_CONN, f"{exc.strerror or exc}"
        else:
            why = mqtt.error_string(rc)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishFailed(
                f"cannot reach the broker at {host}:{port} as {self.device} ({why}): start it "
                "(`coldtrace services up`) or set COLDTRACE_MQTT_HOST / COLDTRACE_MQTT_PORT"
            )
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


class AckingDevice(DeviceConnection):
    """A device that keeps each batch until ingest's end-to-end acknowledgement (contract
    v1.1, `coldtrace/v1/<device>/ack`) covers it, as the firmware's outbox does
    (firmware/outbox.py, docs/wire-format.md): after a reconnect it sends again every batch not
    covered; when an ack shows that ingest misses a seq this device holds although it has one
    sent after that resend (the resend was lost), it sends them again."""

    def __init__(
        self, settings: Settings, device: str, password: str, max_inflight: int = 100
    ) -> None:
        super().__init__(settings, device, password, max_inflight)
        self._lock = threading.Condition()
        # last seq -> (first seq, readings, payload) of each batch not yet acknowledged
        self._outbox: dict[int, tuple[int, int, bytes]] = {}
        self._mark = -1  # the newest seq held at the last resend
        self._connections = 0
        self.acked = 0  # readings acknowledged
        self.resends = 0  # times everything not acknowledged was sent again
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)

    def send(self, batch: TelemetryBatch) -> None:
        payload = batch.model_dump_json(by_alias=True, exclude_defaults=True).encode()
        with self._lock:
            entry = (batch.readings[0].seq, len(batch.readings), payload)
            self._outbox[batch.readings[-1].seq] = entry
        self.publish(payload)

    def unacked(self) -> int:
        """Readings sent and not yet acknowledged."""
        with self._lock:
            return sum(n for _, n, _ in self._outbox.values())

    def wait_acked(self, timeout_s: float, resend_after_s: float = 10.0) -> bool:
        """Wait until ingest has acknowledged everything sent; False after `timeout_s`. When
        no ack moves for `resend_after_s`, everything not acknowledged goes again: a device
        that has stopped sending has no newer reading to reveal a lost resend."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                before = self.acked
                wait = min(resend_after_s, deadline - time.monotonic())
                self._lock.wait_for(partial(self._moved, before), wait)
                if not self._outbox:
                    return True
                moved = self.acked != before
            if time.monotonic() >= deadline:
                return False
            if not moved:
                self._resend()

    def _moved(self, acked_before: int) -> bool:
        return not self._outbox or self.acked != acked_before

    def _resend(self) -> None:
        with self._lock:
            pending = [payload for _, _, payload in self._outbox.values()]
            self._mark = max(self._outbox, default=-1)
            self.resends += 1
        for payload in pending:
            self.publish(payload)

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            return
        client.subscribe(ack_topic(self.device), qos=1)
        self._connections += 1
        if self._connections > 1:
            self._resend()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = Ack.model_validate_json(msg.payload)
        except ValidationError:
            log.warning("%s: ack not understood: %r", self.device, msg.payload[:80])
            return
        high = ack.seq if ack.high is None else ack.high
        with self._lock:
            oldest = min((first for first, _, _ in self._outbox.values()), default=None)
            if oldest is None:
                return
            missing = oldest < ack.first or (ack.seq < high and oldest <= ack.seq + 1)
            resend = missing and high > self._mark
            if oldest >= ack.first:
                for last in [last for last in self._outbox if last <= ack.seq]:
                    self.acked += self._outbox.pop(last)[1]
                self._lock.notify_all()
        if resend:
            self._resend()


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
