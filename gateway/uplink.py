"""The gateway's MQTT session: publishes the spool's batches at QoS 1 on the carried boxes'
telemetry topics, takes ingest's end-to-end acks (``coldtrace/v1/<device>/ack``) to clear
the spool, and keeps the gateway's status retained.

Sending is not deleting: a batch sent and PUBACKed stays in the spool until the ack covers
it. After a reconnect, or when the ack has not moved for ``resend_after_s``, the
unacknowledged readings are sent again (the same bytes: ingest takes them as repeats).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.contract import TOPIC_ROOT, Ack, ack_topic, status_topic, telemetry_topic
from gateway.config import GatewayConfig
from gateway.decode import ack
from gateway.spool import Spool

log = logging.getLogger(__name__)

WINDOW = 20  # batches published and not yet PUBACKed


@dataclass
class _Sent:
    """A device's readings sent on this connection and not yet all acknowledged."""

    seq: int  # the highest seq sent
    acked: int  # the ack when it last moved
    since: float  # monotonic s: when it last moved (or the first send)
    mark: int  # the device's newest spooled seq when this round of sending began


def gateway_status_topic(gateway: str) -> str:
    """Retained JSON of the gateway's spool and port counters (``coldtrace gateway status``
    prints the same)."""
    return f"{TOPIC_ROOT}/{gateway}/gateway"


class Uplink:
    def __init__(self, cfg: GatewayConfig, password: str, spool: Spool) -> None:
        self.cfg = cfg
        self.spool = spool
        self.devices = cfg.devices()
        self.counters: dict[str, int] = {
            "batches": 0,
            "readings_sent": 0,
            "acks": 0,
            "resends": 0,
            "connects": 0,
        }
        self.connected = threading.Event()
        self.wake = threading.Event()  # new readings, or an ack
        self.acks: dict[str, Ack] = {}  # the latest ack of each device
        self._generation = 0  # connections made: a new one sends the unacked again
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.gateway,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.username_pw_set(cfg.gateway, password)
        client.will_set(status_topic(cfg.gateway), b"offline", qos=1, retain=True)
        if cfg.broker.tls_ca is not None:
            client.tls_set(ca_certs=str(cfg.broker.tls_ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.reconnect_delay_set(1, 30)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # -- callbacks (paho's network thread) ---------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        if rc.is_failure:
            log.warning("broker refused the gateway's login: %s", rc)
            return
        self.counters["connects"] += 1
        client.subscribe([(ack_topic(d), 1) for d in self.devices])
        client.publish(status_topic(self.cfg.gateway), b"online", qos=1, retain=True)
        self._generation += 1
        self.connected.set()
        self.wake.set()
        log.info("connected to %s:%d", self.cfg.broker.host, self.cfg.broker.port)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        if self.connected.is_set():
            log.warning("broker connection lost (%s); the spool keeps everything", rc)
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        device = msg.topic.split("/")[2]
        got = ack(bytes(msg.payload))
        if got is None or device not in self.devices:
            log.warning("ack not understood on %s: %r", msg.topic, msg.payload[:80])
            return
        self.counters["acks"] += 1
        self.acks[device] = got
        self.spool.ack(device, got.first, got.seq)
        self.wake.set()

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        self.client.connect_async(
            self.cfg.broker.host, self.cfg.broker.port, keepalive=self.cfg.broker.keepalive_s
        )
        self.client.loop_start()

    def publish_status(self, payload: bytes) -> None:
        if self.connected.is_set():
            self.client.publish(gateway_status_topic(self.cfg.gateway), payload, qos=1, retain=True)

    def run(self, stop: threading.Event) -> None:
        """Publish until ``stop``: the spool's oldest unsent batches, WINDOW in flight."""
        generation = -1
        sent: dict[str, _Sent] = {}
        inflight: list[mqtt.MQTTMessageInfo] = []
        while not stop.is_set():
            if not self.connected.wait(0.2):
                continue
            if generation != self._generation:
                generation = self._generation
                sent.clear()
                inflight.clear()
            self._resend_stale(sent)
            inflight = [i for i in inflight if not i.is_published()]
            if len(inflight) >= WINDOW:
                self._wait(inflight[0])
                continue
            batch = self.spool.next_batch({d: s.seq for d, s in sent.items()}, self.cfg.batch_max)
            if batch is None:
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            info = self.client.publish(telemetry_topic(batch.device), batch.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                continue  # not connected after all: the next connection sends it
            inflight.append(info)
            progress = sent.get(batch.device)
            if progress is None:
                sent[batch.device] = _Sent(
                    batch.last_seq,
                    self.spool.acked(batch.device),
                    time.monotonic(),
                    self.spool.newest(batch.device),
                )
            else:
                progress.seq = batch.last_seq
            self.counters["batches"] += 1
            self.counters["readings_sent"] += batch.count

    def _wait(self, info: mqtt.MQTTMessageInfo) -> None:
        # RuntimeError, ValueError: the connection dropped; the next one sends it again.
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(0.5)

    def _resend_stale(self, sent: dict[str, _Sent]) -> None:
        """Send a device's unacked readings again when ingest says it misses one (its ack's
        ``seq`` below its ``high``) and has something sent after this round began (``high``
        above the mark: the round itself was lost, docs/wire-format.md v1.1), or when its
        ack has not moved for ``resend_after_s`` (an ack lost, an ack without ``high``)."""
        now = time.monotonic()
        for device, progress in list(sent.items()):
            acked = self.spool.acked(device)
            last = self.acks.get(device)
            if acked >= progress.seq:
                del sent[device]  # all acked: nothing to watch
            elif (
                last is not None
                and last.high is not None
                and last.seq < last.high
                and (last.high > progress.mark)
            ):
                log.warning(
                    "ingest misses %s seq %d (has up to %d): sending again",
                    device,
                    last.seq + 1,
                    last.high,
                )
                self.counters["resends"] += 1
                del sent[device]
            elif acked != progress.acked:
                progress.acked, progress.since = acked, now
            elif now - progress.since > self.cfg.resend_after_s:
                log.warning(
                    "no ack for %s above seq %d for %.0f s: sending again",
                    device,
                    acked,
                    now - progress.since,
                )
                self.counters["resends"] += 1
                del sent[device]

    def close(self) -> None:
        if self.connected.is_set():
            self.client.publish(
                status_topic(self.cfg.gateway), b"offline", qos=1, retain=True
            ).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()
