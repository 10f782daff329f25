"""Publish a simulated fleet over MQTT, one authenticated connection per device, as vans do."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from coldtrace.contract import Ack, TelemetryBatch, ack_topic, status_topic, telemetry_topic
from coldtrace.settings import Settings
from simulators.fleet import batches, make_fleet
from simulators.state import Held, SimState

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
    """A device that keeps each message until ingest's end-to-end acknowledgement (contract
    v1.1, `coldtrace/v1/<device>/ack`) covers it, as the firmware's outbox does
    (firmware/outbox.py, docs/wire-format.md): after a reconnect it sends again every message
    not covered; when an ack shows that ingest misses a seq this device holds although it has
    one sent after that resend (the resend was lost), it sends them again. The one sender of
    `coldtrace simulate`, the scenario runner and the chaos tests."""

    def __init__(
        self, settings: Settings, device: str, password: str, max_inflight: int = 100
    ) -> None:
        super().__init__(settings, device, password, max_inflight)
        self._lock = threading.Condition()
        # last seq -> the message not yet acknowledged that ends with it
        self._outbox: dict[int, Held] = {}
        self._ack: Ack | None = None  # the latest ack ingest published
        self._mark = -1  # the newest seq held at the last resend
        self._connections = 0
        self.acked = 0  # readings acknowledged
        self._counted: set[int] = set()  # the last seqs of the messages counted in `acked`
        self.resends = 0  # times everything not acknowledged was sent again
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)

    def send(self, payload: bytes, seqs: Sequence[int]) -> None:
        """Publish one message of readings `seqs` (consecutive) and keep it until
        acknowledged."""
        self.send_held(Held.of(payload, seqs))

    def send_held(self, held: Held) -> None:
        """Publish `held` and keep it until acknowledged. A message the latest ack already
        covers (a scenario's replay, or one kept by an earlier run that ingest has stored
        since) goes out but is not kept; one with the same last seq as a message kept (a
        duplicate) replaces it."""
        with self._lock:
            ack = self._ack
            if ack is not None and ack.first <= held.first <= held.last <= ack.seq:
                self._count(held)
            else:
                self._outbox[held.last] = held
        self.publish(held.payload.encode())

    def unacked(self) -> int:
        """Readings sent and not yet acknowledged."""
        with self._lock:
            return sum(h.readings for h in self._outbox.values())

    def held(self, also: Iterable[Held] = ()) -> list[Held]:
        """The messages not yet acknowledged, oldest first, with those of `also` that are not
        acknowledged either (messages a run meant to send again, in case it was interrupted
        before it did)."""
        with self._lock:
            keep = {h.last: h for h in also if h.last not in self._counted}
            keep.update(self._outbox)
            return [keep[last] for last in sorted(keep)]

    def wait_acked(self, timeout_s: float, resend_after_s: float = 10.0) -> bool:
        """Wait until ingest has acknowledged everything sent; False after `timeout_s`. When
        no ack moves for `resend_after_s`, everything not acknowledged goes again: a device
        that has stopped sending has no newer reading to reveal a lost resend."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                before = self.acked
                wait = max(0.0, min(resend_after_s, deadline - time.monotonic()))
                self._lock.wait_for(partial(self._moved, before), wait)
                if not self._outbox:
                    return True
                moved = self.acked != before
            if time.monotonic() >= deadline:
                return False
            if not moved:
                self._resend()

    def _count(self, held: Held) -> None:
        """Count an acknowledged message's readings, once however often it was sent."""
        if held.last not in self._counted:
            self._counted.add(held.last)
            self.acked += held.readings

    def _moved(self, acked_before: int) -> bool:
        return not self._outbox or self.acked != acked_before

    def _resend(self) -> None:
        with self._lock:
            pending = [h.payload.encode() for h in self._outbox.values()]
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
            self._ack = ack
            oldest = min((h.first for h in self._outbox.values()), default=None)
            if oldest is None:
                return
            missing = oldest < ack.first or (ack.seq < high and oldest <= ack.seq + 1)
            resend = missing and high > self._mark
            if oldest >= ack.first:
                for last in [last for last in self._outbox if last <= ack.seq]:
                    self._count(self._outbox.pop(last))
                self._lock.notify_all()
        if resend:
            self._resend()


def wire(batch: TelemetryBatch) -> tuple[bytes, list[int]]:
    """A batch as `AckingDevice.send` takes it: (payload, its seqs)."""
    payload = batch.model_dump_json(by_alias=True, exclude_defaults=True).encode()
    return payload, [r.seq for r in batch.readings]


def wait_all_acked(devices: Iterable[AckingDevice], timeout_s: float) -> bool:
    """Wait until every device's messages are acknowledged, `timeout_s` for all together."""
    deadline = time.monotonic() + timeout_s
    return all([d.wait_acked(max(0.0, deadline - time.monotonic())) for d in devices])


@dataclass(frozen=True, slots=True)
class Tally:
    """What one device's run came to, in readings: ``sent`` (``carried`` of them kept from an
    earlier run) = ``acked`` (ingest acknowledged them) + ``pending`` (kept in the state
    file for the next run)."""

    device: str
    sent: int
    carried: int
    acked: int
    pending: int


# `simulate` writes the state file before it sends the readings the write records. A write
# per message would fsync once a reading at --batch 1 and rewrite the whole outbox each time
# (quadratic in the readings while ingest is away), so the vans make their readings ahead in
# blocks, as a box's flash records its seq high-water mark ahead: one write records a block of
# made readings (each van's outbox and its seq at the block's last), then they go out one
# step at a time. A block is at least MIN_AHEAD readings a van and at least what a van's
# outbox already holds, so the bytes written stay within a few times those made. A run killed
# mid-block leaves the block's readings not yet sent in the outbox: the next run sends them
# with the rest, and no seq is skipped (a skipped seq would be missing in the books).
MIN_AHEAD = 64


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
    ack_timeout_s: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Tally]:
    """Publish `readings` readings per van, each van keeping them until ingest acknowledges
    them (AckingDevice); wait up to `ack_timeout_s` after the last for the acks; return each
    device's tally. `progress(acknowledged, total)` is called (in readings) after each step
    and once more when the wait for the acks is over.

    Simulated time ends now, so a run shows up at once on dashboards; `speedup` compresses
    it (60: one simulated minute per second; 0: as fast as the broker takes it). With a
    state_file (simulators.state), each van carries on from its last run as a real device
    would: the next boot, seqs continuing upward, time continuing after its last reading; the
    readings not acknowledged are kept there, and every device holding some sends them first
    in the next run (a van not among this run's `vehicles` only sends those). A run resumed
    so soon that its readings would lie in the future at interval_s is squeezed between its
    last reading and now instead: ingest refuses device times ahead of its clock
    (clock_ahead). PublishFailed when the broker cannot be reached.

    The state file is written before each block of readings goes out (MIN_AHEAD): a run
    killed at any instant (SIGKILL) has every reading it made and may have sent, and was not
    acknowledged, in its vans' outboxes there, and each van's seq that of its last reading
    made, so the next run's seqs lie above any it sent. A run interrupted
    (KeyboardInterrupt) saves the state as far as it got, the same way: each van's seq and
    time are those of the last reading it made and kept (a reading made but not kept is made
    again), and nothing made, sent or carried over and not acknowledged is dropped from its
    outbox.
    """
    fleet = make_fleet(vehicles, seed, prefix=prefix)
    state = SimState.load(state_file)
    now_ms = int(time.time() * 1000)
    start_ms = int(now_ms - readings * interval_s * 1000)
    last_ms = state.resume(fleet)
    if last_ms:
        if last_ms + readings * interval_s * 1000 > now_ms:
            interval_s = max(0.001, (now_ms - last_ms) / readings / 1000)
        start_ms = max(start_ms, last_ms + int(interval_s * 1000))
    names = sorted({van.device for van in fleet} | set(state.holding()))
    devices = _connect({d: AckingDevice(settings, d, password_for(d)) for d in names})
    carried = {d: state.pending(d) for d in names}
    last_seq = {van.device: van.seq for van in fleet}  # of the last reading made and kept
    last_ts = last_ms
    streams = {van.device: batches(van, start_ms, readings, interval_s, per_batch) for van in fleet}
    unsent: dict[str, deque[Held]] = {van.device: deque() for van in fleet}  # made, kept

    def save() -> None:
        for van in fleet:
            van.seq = last_seq[van.device]  # a reading made and not kept yet is made again
        held = {d: c.held([*carried[d], *unsent.get(d, ())]) for d, c in devices.items()}
        state.save(fleet, last_ts, held)

    total = vehicles * readings + sum(h.readings for held in carried.values() for h in held)
    t0 = time.monotonic()
    made = 0  # steps made (and kept in the state file)
    try:
        for d, held in carried.items():
            for h in held:
                devices[d].send_held(h)
        for step in range(math.ceil(readings / per_batch)):
            if step == made:
                most = max((devices[van.device].unacked() for van in fleet), default=0)
                ahead = math.ceil(max(MIN_AHEAD, most) / per_batch)
                for van in fleet:
                    for batch in islice(streams[van.device], ahead):
                        unsent[van.device].append(Held.of(*wire(batch)))
                        last_seq[van.device] = batch.readings[-1].seq
                        last_ts = max(last_ts, batch.readings[-1].ts or 0)
                made += ahead
                save()
            for van in fleet:
                queue = unsent[van.device]
                devices[van.device].send_held(queue[0])
                queue.popleft()  # after the send: interrupted between the two, it is in both
            if progress:
                progress(sum(c.acked for c in devices.values()), total)
            if speedup > 0:
                wait = t0 + (step + 1) * per_batch * interval_s / speedup - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        wait_all_acked(devices.values(), ack_timeout_s)
        if progress:  # where the acks stand now: the last step's count was made before them
            progress(sum(c.acked for c in devices.values()), total)
    finally:
        for device in devices.values():
            device.close()
        save()
    ours = {van.device for van in fleet}
    tallies = []
    for d, device in devices.items():
        old = sum(h.readings for h in carried[d])
        sent = old + (readings if d in ours else 0)
        tallies.append(Tally(d, sent, old, device.acked, device.unacked()))
    return tallies


def _connect(devices: dict[str, AckingDevice]) -> dict[str, AckingDevice]:
    """Connect every device, or none: those connected are closed again when one fails."""
    connected: list[AckingDevice] = []
    try:
        for device in devices.values():
            device.connect()
            connected.append(device)
    except BaseException:
        for device in connected:
            device.close()
        raise
    return devices
