"""Notifiers: a signed webhook, an MQTT topic per device and e-mail, fed from the outbox.

The outbox (alerts.store.Notification) holds one row per breach transition and channel, so
a replay never notifies twice; this worker sends what is due on its own thread, retrying
with exponential backoff, and never holds up ingest or the rules. A breach's transitions
reach each channel in the order they happened: a later one waits while an earlier one is
being retried (alerts.store.BreachStore.due), also across restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Protocol

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from alerts.store import BreachStore, Notification
from coldtrace.contract import TOPIC_ROOT
from coldtrace.settings import Settings

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Coldtrace-Signature"


def alerts_topic(device: str) -> str:
    return f"{TOPIC_ROOT}/alerts/{device}"


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Channel(Protocol):
    name: str

    def send(self, note: Notification, device: str) -> None: ...

    def close(self) -> None: ...


class Webhook:
    name = "webhook"

    def __init__(self, url: str, secret: bytes) -> None:
        self.url, self.secret = url, secret
        self.http = httpx.Client(timeout=10)

    def send(self, note: Notification, device: str) -> None:
        body = note.payload.encode()
        resp = self.http.post(
            self.url,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self.secret, body),
                "X-Coldtrace-Notification": str(note.id),  # receivers can drop repeats
            },
        )
        resp.raise_for_status()

    def close(self) -> None:
        self.http.close()


class MqttAlerts:
    name = "mqtt"

    def __init__(self, settings: Settings) -> None:
        # Its own account (ingest's password): the broker makes a client's id its username, so
        # publishing as ingest would take ingest's own session.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.mqtt_alerts_username
        )
        if settings.mqtt_password:
            self.client.username_pw_set(
                settings.mqtt_alerts_username, settings.mqtt_password.get_secret_value()
            )
        self.client.connect_async(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()

    def send(self, note: Notification, device: str) -> None:
        info = self.client.publish(alerts_topic(device), note.payload, qos=1)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise ConnectionError("no PUBACK from the broker")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Email:
    name = "email"

    def __init__(self, settings: Settings) -> None:
        relay = settings.notify_smtp
        assert relay and settings.notify_smtp_from and settings.notify_smtp_to
        self.relay, self.sender = relay, settings.notify_smtp_from
        self.to = [a.strip() for a in settings.notify_smtp_to.split(",") if a.strip()]

    def send(self, note: Notification, device: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"] = self.sender, ", ".join(self.to)
        msg["Subject"] = f"[coldtrace] {device}: breach {note.transition}"
        msg["X-Coldtrace-Notification"] = str(note.id)
        msg.set_content(email_text(note.payload))
        self.relay.send(msg)

    def close(self) -> None:
        pass  # one connection per message


def email_text(payload: str) -> str:
    """A readable summary first, then the same JSON document the other channels send."""
    b = json.loads(payload)
    where = b["device"] + (f" probe {b['probe']}" if b["probe"] else "")
    lines = [
        f"Breach {b['transition']}: {b['rule']} on {where} (profile {b['profile']}).",
        f"Severity: {b['severity']}; start {b['start']}; end {b['end'] or 'still open'}.",
    ]
    if b["peak_c"] is not None:
        lines.append(
            f"Peak {b['peak_c']} C against the limit {b['limit_c']} C; "
            f"{b['degree_minutes']} degree-minutes."
        )
    if b["detected_late"]:
        lines.append(f"Found late: detected at {b['detected_at']}.")
    return "\n".join([*lines, "", payload])


def channels_from(settings: Settings) -> list[Channel]:
    channels: list[Channel] = []
    if settings.notify_webhook_url and settings.notify_webhook_secret:
        secret = settings.notify_webhook_secret.get_secret_value().encode()
        channels.append(Webhook(settings.notify_webhook_url, secret))
    if settings.notify_mqtt:
        channels.append(MqttAlerts(settings))
    if settings.notify_smtp_host:
        channels.append(Email(settings))
    return channels


class Notifier:
    def __init__(
        self,
        store: BreachStore,
        channels: list[Channel],
        retry_max_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.channels = {c.name: c for c in channels}
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alerts-notify", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout=15)
        for channel in self.channels.values():
            channel.close()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.send_due()
            except Exception:
                log.exception("notifier: outbox unavailable; retrying")
            self.wake.wait(1.0)
            self.wake.clear()

    def send_due(self) -> None:
        """Send what is due; again while that let a breach's next transition become due."""
        while self._send_batch():
            pass

    def _send_batch(self) -> bool:
        """One batch of due notifications; whether any was sent."""
        sent = False
        for note in self.store.due(int(self.clock() * 1000), list(self.channels)):
            channel = self.channels[note.channel]
            device = str(json.loads(note.payload)["device"])
            try:
                channel.send(note, device)
            except Exception as exc:
                delay = min(2.0 ** (note.attempts + 1), self.retry_max_s)
                log.warning(
                    "notification %d (%s, %s) failed (%s); retry in %.0fs",
                    note.id,
                    note.channel,
                    note.transition,
                    exc,
                    delay,
                )
                self.store.failed(note.id, str(exc), int((self.clock() + delay) * 1000))
            else:
                self.store.sent(note.id, int(self.clock() * 1000))
                sent = True
        return sent
