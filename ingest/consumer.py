"""MQTT side of ingest (paho-mqtt 2.x, MQTT 5): receive at QoS 1, ack only when told.

- fixed client id, clean_start=False and a session expiry: the broker keeps the session and
  queues telemetry while ingest is down or restarting;
- manual_ack: a PUBACK goes out only when the pipeline has stored the message;
- Receive Maximum = ingest_max_inflight: the broker never has more un-acked messages out to
  us than that, which bounds ingest's memory (backpressure lands in the broker's queue);
- once a batch is stored, each of its devices is told on its retained `ack` topic which seqs
  it may delete (contract v1.1): the end-to-end acknowledgement a PUBACK is not.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from coldtrace.contract import TELEMETRY_SUBSCRIPTION, Ack, ack_topic
from coldtrace.settings import Settings
from ingest.pipeline import InboundMessage

log = logging.getLogger(__name__)


class BrokerRefused(Exception):
    """The broker refused our credentials: a configuration error, not an outage."""


class MqttConsumer:
    def __init__(
        self, settings: Settings, inbox: queue.Queue[InboundMessage], stop: threading.Event
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self.stop_event = stop
        self.connected = threading.Event()
        self.refused: str | None = None
        self.generation = 0
        self.received = 0  # messages delivered by the broker (only the network thread adds)
        self._lock = threading.Lock()
        self._leaving = False  # stop() asked for the disconnect
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(*settings.mqtt_login)  # ConfigError when not configured
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    def start(self, timeout_s: float = 10.0) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        props.ReceiveMaximum = self.settings.ingest_max_inflight
        self.client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=30,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.connected.is_set() and not self.refused:
            time.sleep(0.05)
        if self.refused:
            self.stop()
            raise BrokerRefused(
                f"broker {self.settings.mqtt_host}:{self.settings.mqtt_port} refused "
                f"{self.settings.mqtt_username!r}: {self.refused}; check COLDTRACE_MQTT_USERNAME "
                "and COLDTRACE_MQTT_PASSWORD"
            )
        if not self.connected.is_set():
            log.warning(
                "broker %s:%d not reachable yet; still trying",
                self.settings.mqtt_host,
                self.settings.mqtt_port,
            )

    def stop(self) -> None:
        self._leaving = True
        self.client.disconnect()
        self.client.loop_stop()

    def alive(self) -> bool:
        thread = self.client._thread  # paho exposes no public liveness check
        return thread is not None and thread.is_alive()

    def ack(self, messages: list[InboundMessage]) -> int:
        """PUBACK stored messages; those from an earlier connection are redelivered anyway."""
        acked = 0
        with self._lock:
            for m in messages:
                if m.qos and m.generation == self.generation and self.connected.is_set():
                    self.client.ack(m.mid, m.qos)
                    acked += 1
        return acked

    def publish_acks(self, acks: dict[str, Ack]) -> None:
        """Tell each device (retained, QoS 1) the seqs it may delete: call only once they are
        stored. Sent again with every stored batch of the device, so an ack the
        broker lost (a crash before its autosave) is replaced by the device's next resend."""
        for device, ack in acks.items():
            self.client.publish(ack_topic(device), ack.payload(), qos=1, retain=True)

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
            if reason_code.value in (0x86, 0x87, 0x8C):  # bad credentials / not authorized
                self.refused = str(reason_code)
            log.error("MQTT connect refused: %s", reason_code)
            return
        with self._lock:
            self.generation += 1
            self.connected.set()
        log.info(
            "MQTT connected to %s:%d as %s (session present: %s)",
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            self.settings.mqtt_client_id,
            flags.session_present,
        )
        client.subscribe(TELEMETRY_SUBSCRIPTION, qos=1)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self.connected.clear()
        if self._leaving:  # a normal stop (SIGTERM): no news for whoever watches warnings
            log.info("MQTT disconnected (%s): ingest is stopping", reason_code)
        else:
            log.warning("MQTT disconnected (%s); paho reconnects with backoff", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        inbound = InboundMessage(
            msg.topic, bytes(msg.payload), msg.mid, msg.qos, self.generation, time.time_ns()
        )
        # A full inbox (messages of an earlier connection still queued when the broker
        # redelivers them) blocks here, which stops reading the socket: backpressure, never
        # unbounded memory. On shutdown the message is left un-acked for the broker to resend.
        while not self.stop_event.is_set():
            try:
                self.inbox.put(inbound, timeout=0.2)
                return
            except queue.Full:
                continue
