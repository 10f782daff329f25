"""Rules inside ingest, through the real Mosquitto, ingest process and InfluxDB, notifying a
real local SMTP server (aiosmtpd), a real local HTTP receiver (http.server) and the broker's
topic coldtrace/v1/alerts/<device>.

The excursion: a chilled van (0..+4 C, 15 min delay) whose product probe reads 3.0 C each
minute, then 6.0 C from minute 10 to 29, then 3.0 C again. Hand-computed: one breach of
rule excursion_high from minute 10 (first reading above +4 C) to minute 30 (first reading
back in range), opened at minute 25; 20 min x 2 C = 40 degree-minutes; the air probe stays
in range and has none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.store import Notification
from coldtrace.breaches import Breach
from coldtrace.contract import TOPIC_ROOT
from coldtrace.db import make_engine
from coldtrace.deliveries.attach import breach_mark, delivery_breaches
from coldtrace.deliveries.models import Delivery
from coldtrace.devtools.services import free_port
from coldtrace.influx import InfluxClient, quote_string
from coldtrace.settings import Settings
from tests.conftest import (
    Devices,
    WebhookReceiver,
    monitor_login,
    put_on_delivery,
    stored_count,
    wait_for,
)

MINUTE = 60_000
SECRET = "webhook-secret-for-this-test"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        text = envelope.content.decode()
        self.messages.append({"to": envelope.rcpt_tos, "text": text})
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[list[dict[str, Any]], str]]:
    r = WebhookReceiver()
    yield r.received, r.url
    r.close()


class Hooks:
    """The webhook calls about one device (the suite's other devices may go silent)."""

    def __init__(self, received: list[dict[str, Any]], device: str) -> None:
        self.received, self.device = received, device

    def _mine(self) -> list[dict[str, Any]]:
        return [h for h in self.received if json.loads(h["body"])["device"] == self.device]

    def __len__(self) -> int:
        return len(self._mine())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._mine())


def batch(device: str, t0: int, minutes: range) -> bytes:
    readings = [
        {
            "seq": m,
            "ts": t0 + m * MINUTE,
            "up": m * MINUTE,
            "probes": {"product": 6.0 if 10 <= m < 30 else 3.0, "air": 2.0},
        }
        for m in minutes
    ]
    return json.dumps({"device": device, "boot": 1, "readings": readings}).encode()


def breaches(db: Path, device: str) -> list[Breach]:
    engine = make_engine(f"sqlite:///{db}")
    with Session(engine) as s:
        return list(s.scalars(select(Breach).where(Breach.device == device)))


def outbox(db: Path) -> list[Notification]:
    with Session(make_engine(f"sqlite:///{db}")) as s:
        return list(s.scalars(select(Notification)))


def transitions(mails: list[dict[str, Any]], device: str) -> list[str]:
    return sorted(
        m["text"].split(f"[coldtrace] {device}: breach ")[1].split()[0]
        for m in mails
        if f"[coldtrace] {device}: breach " in m["text"]
    )


@pytest.fixture
def alert_topic(settings: Settings) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """What the broker delivers on coldtrace/v1/alerts/#, read with the monitor account."""
    received: list[tuple[str, dict[str, Any]]] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set(*monitor_login(settings))
    client.on_connect = lambda c, *_: c.subscribe(f"{TOPIC_ROOT}/alerts/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda c, u, m: received.append((m.topic, json.loads(m.payload)))
    client.connect(settings.mqtt_host, settings.mqtt_port)
    client.loop_start()
    assert subscribed.wait(10)
    yield received
    client.loop_stop()
    client.disconnect()


@pytest.fixture
def alerting_ingest(start_ingest, mailbox, webhook):
    _, smtp_port = mailbox
    _, url = webhook
    env = {
        "COLDTRACE_ALERTS_DEFAULT_PROFILE": "chilled",
        "COLDTRACE_NOTIFY_WEBHOOK_URL": url,
        "COLDTRACE_NOTIFY_WEBHOOK_SECRET": SECRET,
        "COLDTRACE_NOTIFY_SMTP_HOST": "127.0.0.1",
        "COLDTRACE_NOTIFY_SMTP_PORT": str(smtp_port),
        "COLDTRACE_NOTIFY_SMTP_FROM": "coldtrace@example.test",
        "COLDTRACE_NOTIFY_SMTP_TO": "quality@example.test",
        "COLDTRACE_NOTIFY_MQTT": "true",
    }
    return lambda **extra: start_ingest(**env, **extra)


class Van(NamedTuple):
    """The test's van and where ingest's work about it shows."""

    db: Path  # the store of the ingest process the test starts
    device: str
    t0: int  # device time of minute 0: 45 min ago, so minute 39 is still in the past
    hooks: Hooks
    mailbox: Mailbox


@pytest.fixture
def van(prefix: str, tmp_path: Path, mailbox, webhook) -> Van:
    box, _ = mailbox
    all_hooks, _ = webhook
    device = f"{prefix}-van"
    t0 = (int(time.time() * 1000) // MINUTE - 45) * MINUTE
    return Van(tmp_path / "ingest.db", device, t0, Hooks(all_hooks, device), box)


def check_one_breach(db: Path, device: str, t0: int) -> Breach:
    (b,) = breaches(db, device)
    assert (b.probe, b.rule, b.profile, b.state) == (
        "product",
        "excursion_high",
        "chilled",
        "closed",
    )
    assert (b.start_ts, b.end_ts) == (t0 + 10 * MINUTE, t0 + 30 * MINUTE)
    assert (b.severity, b.peak, b.degree_minutes) == ("major", 6.0, 40.0)
    return b


def test_excursion_gives_one_breach_stored_written_and_notified_once(
    alert_topic, alerting_ingest, devices: Devices, influx: InfluxClient, van: Van
) -> None:
    db, device, t0, hooks, box = van
    ingest = alerting_ingest()
    payloads = [batch(device, t0, range(m, m + 5)) for m in range(0, 40, 5)]
    devices.publish(device, payloads)

    wait_for(lambda: [b.state for b in breaches(db, device)] == ["closed"], what="a closed breach")
    b = check_one_breach(db, device, t0)
    # found 20+ minutes after its device time: flagged, with both times kept
    assert b.detected_late and b.detected_at > b.end_ts

    # The store and InfluxDB are two writes (store first: it is the breach's record); a
    # reader of InfluxDB sees the points once the stage wrote them, not at the same instant.
    def points() -> list[dict[str, Any]]:
        query = f"SELECT * FROM breach WHERE device = {quote_string(device)} ORDER BY time"
        return influx.rows(query)

    def transitions_written() -> list[dict[str, Any]]:
        return [p for p in points() if p["transition"] != "updated"]

    wait_for(lambda: len(transitions_written()) == 2, what="the two breach points in InfluxDB")
    written = transitions_written()
    assert [(p["transition"], p["time"]) for p in written] == [
        ("opened", t0 + 10 * MINUTE),
        ("closed", t0 + 30 * MINUTE),
    ]
    assert written[1]["end"] == t0 + 30 * MINUTE and written[1]["probe"] == "product"
    # Its figures kept current while open: only if ingest stored the readings of minutes
    # 25..29 (it opens at 25) apart from those of 30 (it closes): at the batch's last reading,
    # with no state (ingest's batching is its own, so whether it did is not ours to say).
    updates = [(p["time"], p["state"]) for p in points() if p["transition"] == "updated"]
    assert set(updates) <= {(t0 + 29 * MINUTE, None)}

    wait_for(lambda: len(transitions(box.messages, device)) == 2, what="two e-mails")
    assert transitions(box.messages, device) == ["closed", "opened"]
    assert all(m["to"] == ["quality@example.test"] for m in box.messages)
    wait_for(lambda: len(hooks) == 2, what="two webhook calls")
    for hook in hooks:
        expected = "sha256=" + hmac.new(SECRET.encode(), hook["body"], hashlib.sha256).hexdigest()
        assert hook["headers"]["X-Coldtrace-Signature"] == expected
    bodies = [json.loads(h["body"]) for h in hooks]
    assert sorted(x["transition"] for x in bodies) == ["closed", "opened"]
    assert {(x["device"], x["start"]) for x in bodies} == {
        (device, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((t0 + 10 * MINUTE) / 1000)))
    }

    topic = f"{TOPIC_ROOT}/alerts/{device}"
    wait_for(lambda: len([m for m in alert_topic if m[0] == topic]) == 2, what="two MQTT alerts")
    assert sorted(p["transition"] for t, p in alert_topic if t == topic) == ["closed", "opened"]

    # MQTT redelivers and a gateway replays the whole spool: nothing new anywhere.
    before = ingest.metrics().get("coldtrace_ingest_duplicates_total", 0)
    devices.publish(device, payloads)
    wait_for(
        lambda: ingest.metrics().get("coldtrace_ingest_duplicates_total", 0) >= before + 40,
        what="the replay to be seen as duplicates",
    )
    time.sleep(2)  # the notifier polls every second: give a duplicate the chance to appear
    check_one_breach(db, device, t0)
    assert len(hooks) == 2 and len(transitions(box.messages, device)) == 2
    assert len([m for m in alert_topic if m[0] == topic]) == 2
    assert all(n.sent_at is not None for n in outbox(db))

    # what an operator sees of it: ingest's /metrics and /health report the rules stage
    wait_for(
        lambda: ingest.metrics().get("coldtrace_alerts_readings_evaluated_total") == 40,
        what="the 40 readings evaluated",
    )
    figures = ingest.metrics()
    for transition in ("opened", "closed"):
        key = f'coldtrace_alerts_breaches_total{{rule="excursion_high",transition="{transition}"}}'
        assert figures[key] == 1
    assert figures["coldtrace_alerts_up"] == 1
    assert ingest.health()[0] == 200 and ingest.health()[1]["rules_alive"] is True


def test_restart_mid_excursion_keeps_the_breach_open_and_closes_it_once(
    alerting_ingest, devices: Devices, influx: InfluxClient, van: Van
) -> None:
    db, device, t0, hooks, box = van
    # On no delivery: its first half ends ~19 min ago, past the silence gap, and it is not
    # reported silent (the silence rule is the next test's).
    ingest = alerting_ingest()
    devices.publish(device, [batch(device, t0, range(m, m + 3)) for m in range(0, 27, 3)])
    wait_for(lambda: [b.state for b in breaches(db, device)] == ["open"], what="an open breach")
    # Killed once the 'opened' notifications are recorded as sent: a kill between a send and
    # its record would send it again (at least once; receivers dedupe on the id header).
    wait_for(
        lambda: len(outbox(db)) == 3 and all(n.sent_at for n in outbox(db)),
        what="the 'opened' notifications sent",
    )
    ingest.stop(signal.SIGKILL)

    alerting_ingest()  # a new process: no memory but the store and InfluxDB
    devices.publish(device, [batch(device, t0, range(m, m + 3)) for m in range(27, 39, 3)])
    wait_for(lambda: stored_count(influx, f"^{device}$") == 39, what="39 stored readings")
    wait_for(lambda: [b.state for b in breaches(db, device)] == ["closed"], what="closed breach")
    check_one_breach(db, device, t0)
    wait_for(lambda: len(hooks) == 2, what="the 'closed' webhook")
    time.sleep(2)
    assert sorted(json.loads(h["body"])["transition"] for h in hooks) == ["closed", "opened"]
    assert transitions(box.messages, device) == ["closed", "opened"]
    assert len({h["headers"]["X-Coldtrace-Notification"] for h in hooks}) == 2


def test_a_restart_logs_counts_and_sends_no_transition_of_a_closed_breach_again(
    alerting_ingest, devices: Devices, influx: InfluxClient, van: Van
) -> None:
    db, device, t0, hooks, _ = van
    first = alerting_ingest()
    # one message: the breach opens and closes in one batch of the rules stage
    devices.publish(device, [batch(device, t0, range(0, 40))])
    wait_for(lambda: [b.state for b in breaches(db, device)] == ["closed"], what="a closed breach")
    wait_for(lambda: len(hooks) == 2, what="the two webhook calls")
    assert [json.loads(h["body"])["transition"] for h in hooks] == ["opened", "closed"]
    first.stop()

    again = alerting_ingest()  # judges the device again from InfluxDB on its next readings
    devices.publish(device, [batch(device, t0, range(40, 43))])
    wait_for(
        lambda: again.metrics().get("coldtrace_alerts_readings_evaluated_total", 0) >= 3,
        what="the new readings judged",
    )
    time.sleep(2)  # the notifier polls every second: give a repeat the chance to appear
    check_one_breach(db, device, t0)
    counted = {k: v for k, v in again.metrics().items() if "alerts_breaches_total" in k}
    assert counted == {}
    log = again.logtext()  # both processes' (one log file): each transition logged once
    assert (log.count("breach opened: "), log.count("breach closed: ")) == (1, 1)
    assert len(hooks) == 2
    points = influx.rows(f"SELECT * FROM breach WHERE device = {quote_string(device)}")
    assert [(p["transition"], p["state"]) for p in points] == [
        ("opened", "open"),  # the point of the opening says what was true then
        ("closed", "closed"),
    ]


def test_silent_device_is_reported_and_closed_when_it_speaks_again(
    alerting_ingest, devices: Devices, influx: InfluxClient, van: Van
) -> None:
    """Only a device on a delivery in transit is reported silent; a parked one is not."""
    db, device, t0, hooks, _ = van
    parked = f"{device}-parked"
    alerting_ingest(COLDTRACE_ALERTS_SILENT_AFTER_S="2")  # it migrates its store
    delivery = put_on_delivery(f"sqlite:///{db}", device, t0, "start")

    def send(to: str, seq: int) -> int:
        ts = int(time.time() * 1000)
        reading = {"seq": seq, "ts": ts, "up": seq, "probes": {"product": 3.0}}
        devices.publish(to, [json.dumps({"device": to, "boot": 1, "readings": [reading]}).encode()])
        return ts

    send(parked, 0)
    wait_for(lambda: stored_count(influx, f"^{parked}$") == 1, what="the parked van's reading")
    last = send(device, 0)
    silent = wait_for(
        lambda: [b for b in breaches(db, device) if b.rule == "device_silent"], what="silence"
    )
    assert [(b.probe, b.state, b.start_ts) for b in silent] == [("", "open", last)]
    assert breaches(db, parked) == []
    back = send(device, 1)
    wait_for(lambda: breaches(db, device)[0].state == "closed", what="the silence to close")
    (b,) = breaches(db, device)
    assert (b.start_ts, b.end_ts) == (last, back)
    wait_for(lambda: len(hooks) == 2, what="two webhook calls")
    bodies = [json.loads(h["body"]) for h in hooks]  # in the order they happened
    assert [(x["rule"], x["transition"], x["probe"]) for x in bodies] == [
        ("device_silent", "opened", None),
        ("device_silent", "closed", None),
    ]
    # the silence is the delivery's: its device's own breach (probe "")
    engine = make_engine(f"sqlite:///{db}")
    with Session(engine) as session:
        d = session.get_one(Delivery, delivery)
        marks = [breach_mark(x) for x in delivery_breaches(session, d)]
    engine.dispose()
    assert [(m.id, m.probe, m.rule) for m in marks] == [(b.id, "", "device_silent")]


def test_readings_of_a_refused_batch_stored_one_by_one_are_judged(
    alerting_ingest, devices: Devices, settings: Settings, prefix: str, van: Van
) -> None:
    """InfluxDB refuses a batch (a field type conflict on the reading after the excursion):
    ingest stores its messages one by one and dead-letters the poisoned one; the rules stage
    judges the readings that were stored."""
    database = f"drift_{prefix}"  # its own database: the drift would break other tests
    influx = InfluxClient(settings.model_copy(update={"influx_database": database}))
    influx.create_database()
    db, device, t0, _, _ = van
    poisoned_ts = t0 + 40 * MINUTE  # same time, same shard: battery_v is a string there
    influx.write(f'device_health,device={prefix}-other battery_v="flat" {poisoned_ts}'.encode())
    ingest = alerting_ingest(
        COLDTRACE_INFLUX_DATABASE=database, COLDTRACE_INGEST_BATCH_DELAY_MS="300"
    )
    poisoned = {"seq": 40, "ts": poisoned_ts, "up": 40 * MINUTE, "probes": {}, "battery_v": 3.7}
    devices.publish(  # back to back: one batch
        device,
        [
            batch(device, t0, range(0, 40)),
            json.dumps({"device": device, "boot": 1, "readings": [poisoned]}).encode(),
        ],
    )
    wait_for(lambda: [b.state for b in breaches(db, device)] == ["closed"], what="a closed breach")
    check_one_breach(db, device, t0)
    assert "storing its messages one by one" in ingest.logtext()
    assert ingest.metrics()["coldtrace_ingest_rejected_total"] == 1
    influx.close()
