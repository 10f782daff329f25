"""The outbox worker against a real local HTTP receiver that fails, then recovers: the
notification is retried with backoff (injected clock) and sent once, signed. On a migrated
store, SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest

from alerts.engine import ProbeEngine
from alerts.notify import SIGNATURE_HEADER, Notifier, Webhook
from alerts.rules import (
    BreachClosed,
    BreachEscalated,
    BreachOpened,
    BreachRecord,
    Cumulative,
    Excursion,
    Mkt,
    RuleSet,
    Sample,
)
from alerts.store import BreachStore
from tests.conftest import WebhookReceiver

T0 = 1_784_007_600_000


@pytest.fixture
def receiver() -> Iterator[tuple[WebhookReceiver, str]]:
    r = WebhookReceiver()
    yield r, r.url
    r.close()


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def test_failed_webhook_is_retried_with_backoff_then_sent_once(receiver, database_url) -> None:
    state, url = receiver
    store = BreachStore(database_url)
    clock = Clock(T0 + 20 * 60_000)
    notifier = Notifier(store, [Webhook(url, b"s3cret")], retry_max_s=300, clock=clock)
    opened = BreachRecord("excursion_high", T0, None, "major", 6.0, 0.0, 4.0)
    store.apply(
        "van-1", "product", "chilled", [BreachOpened(opened, T0)], clock.ms, 300_000, ["webhook"]
    )

    state.fail_next = 1
    notifier.send_due()
    (note,) = store.due(clock.ms + 10_000, ["webhook"])
    assert (note.attempts, note.sent_at, note.next_attempt_at) == (1, None, clock.ms + 2_000)
    assert "503" in (note.last_error or "")
    notifier.send_due()  # not due yet
    assert state.received == []
    clock.ms += 2_000
    notifier.send_due()
    assert len(state.received) == 1
    body = state.received[0]["body"]
    assert state.received[0]["headers"][SIGNATURE_HEADER] == (
        "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    )
    clock.ms += 60_000
    notifier.send_due()
    assert len(state.received) == 1 and store.due(clock.ms, ["webhook"]) == []

    # the same transitions again (a replay): the outbox keys keep them from being re-sent
    closed = BreachRecord("excursion_high", T0, T0 + 30 * 60_000, "major", 6.0, 40.0, 4.0)
    for _ in range(2):
        store.apply(
            "van-1",
            "product",
            "chilled",
            [BreachOpened(opened, T0), BreachClosed(closed, T0 + 30 * 60_000)],
            clock.ms,
            300_000,
            ["webhook"],
        )
    notifier.send_due()
    assert [b'"transition": "closed"' in r["body"] for r in state.received] == [False, True]


def test_suppressed_breach_is_stored_not_notified_until_it_alarms(database_url) -> None:
    store = BreachStore(database_url)
    loading = BreachRecord("excursion_high", T0, None, "major", -16.0, 0.0, -18.0, True)
    store.apply("van-1", "product", "deep-frozen", [BreachOpened(loading, T0)], T0, 1, ["email"])
    (row,) = store.known("van-1")
    assert row.suppressed and store.due(T0 + 1, ["email"]) == []
    alarming = BreachRecord("excursion_high", T0, None, "major", -16.0, 5.0, -18.0, False)
    store.apply("van-1", "product", "deep-frozen", [BreachOpened(alarming, T0)], T0, 1, ["email"])
    (row,) = store.known("van-1")
    assert not row.suppressed
    due = store.due(T0 + 1, ["email"])
    assert [(n.transition, n.channel) for n in due] == [("opened", "email")]


def test_a_channel_no_longer_configured_does_not_hold_up_the_others(database_url) -> None:
    store = BreachStore(database_url)
    for minute in range(120):  # more pending than one batch of the worker (100)
        b = BreachRecord("excursion_high", T0 + minute * 60_000, None, "major", 6.0, 0.0, 4.0)
        store.apply("van-1", "product", "chilled", [BreachOpened(b, b.start)], T0, 1, ["sms"])
    b = BreachRecord("excursion_high", T0 + 200 * 60_000, None, "major", 6.0, 0.0, 4.0)
    store.apply("van-1", "product", "chilled", [BreachOpened(b, b.start)], T0, 1, ["email"])
    assert [n.channel for n in store.due(T0 + 1, ["email"])] == ["email"]


WINDOW_RULES = {
    "excursion_high": (Excursion("excursion_high", 4.0, 1.0, 0.2, 15 * 60_000, 4.0, None), 6.0),
    "excursion_low": (Excursion("excursion_low", 0.0, -1.0, 0.2, 15 * 60_000, None, None), -1.0),
    "cumulative": (Cumulative("cumulative", 4.0, None, 30 * 60_000, 24 * 3600_000), 5.5),
    "mkt": (Mkt("mkt", 8.0, 24 * 3600_000), 10.0),
}


@pytest.mark.parametrize("rule", sorted(WINDOW_RULES))
def test_each_temperature_rule_in_a_configured_window_is_stored_suppressed_and_not_sent(
    database_url, rule
) -> None:
    judge, warm = WINDOW_RULES[rule]
    engine = ProbeEngine(RuleSet([judge]))
    # warm for 3 h, read every 5 min, all inside a configured window (defrost)
    events = engine.add([Sample(T0 + m * 60_000, m, warm, None, True) for m in range(0, 181, 5)])
    store = BreachStore(database_url)
    store.apply("van-1", "product", "chilled", events, T0 + 4 * 3600_000, 1, ["webhook"])
    (row,) = store.known("van-1")
    assert (row.rule, row.state, row.suppressed) == (rule, "open", True)
    assert store.due(T0 + 5 * 3600_000, ["webhook"]) == []


def test_critical_in_a_configured_window_is_sent(database_url) -> None:
    judge, _ = WINDOW_RULES["excursion_high"]  # critical 4 C above the limit: 8 C
    events = ProbeEngine(RuleSet([judge])).add(
        [Sample(T0 + m * 60_000, m, 9.0, None, True) for m in range(0, 3)]
    )
    store = BreachStore(database_url)
    store.apply("van-1", "product", "chilled", events, T0 + 3 * 60_000, 1, ["webhook"])
    (row,) = store.known("van-1")
    assert (row.severity, row.suppressed) == ("critical", False)
    due = store.due(T0 + 4 * 60_000, ["webhook"])
    assert [(n.breach_id, n.transition) for n in due] == [(row.id, "opened")]


def test_a_breachs_transitions_reach_the_receiver_in_order_across_retries_and_a_restart(
    receiver, database_url
) -> None:
    state, url = receiver
    clock = Clock(T0 + 90 * 60_000)
    opened = BreachRecord("excursion_high", T0, None, "major", 6.0, 0.0, 4.0)
    escalated = BreachRecord("excursion_high", T0, None, "critical", 9.0, 80.0, 4.0)
    closed = BreachRecord("excursion_high", T0, T0 + 80 * 60_000, "critical", 9.0, 90.0, 4.0)
    other = BreachRecord("excursion_high", T0, None, "major", 5.0, 0.0, 4.0)
    store = BreachStore(database_url)
    store.apply("van-1", "product", "chilled", [BreachOpened(opened, T0)], clock.ms, 1, ["webhook"])
    notifier = Notifier(store, [Webhook(url, b"s")], retry_max_s=300, clock=clock)
    state.fail_next = 2  # the outage: "opened" fails twice, backing off 2 s then 4 s
    notifier.send_due()
    clock.ms += 2_000
    store.apply(
        "van-1",
        "product",
        "chilled",
        [BreachEscalated(escalated, T0 + 60 * 60_000), BreachClosed(closed, T0 + 80 * 60_000)],
        clock.ms,
        1,
        ["webhook"],
    )
    store.apply("van-2", "product", "chilled", [BreachOpened(other, T0)], clock.ms, 1, ["webhook"])
    notifier.send_due()  # "opened" fails again; its later transitions wait, van-2's does not
    assert [json.loads(r["body"])["device"] for r in state.received] == ["van-2"]
    assert [n.transition for n in store.due(clock.ms + 10_000, ["webhook"])] == ["opened"]

    # a restart: a new store and notifier on the same outbox, once the outage is over
    clock.ms += 4_000
    restarted = Notifier(BreachStore(database_url), [Webhook(url, b"s")], 300, clock=clock)
    restarted.send_due()
    sent = [json.loads(r["body"]) for r in state.received]
    assert [(b["device"], b["transition"]) for b in sent] == [
        ("van-2", "opened"),
        ("van-1", "opened"),
        ("van-1", "escalated"),
        ("van-1", "closed"),
    ]


def test_a_transition_stored_already_is_no_change(database_url) -> None:
    opened = BreachRecord("excursion_high", T0, None, "major", 6.0, 0.0, 4.0)
    closed = BreachRecord("excursion_high", T0, T0 + 30 * 60_000, "major", 6.0, 40.0, 4.0)
    both = [BreachOpened(opened, T0 + 20 * 60_000), BreachClosed(closed, T0 + 30 * 60_000)]
    store = BreachStore(database_url)
    changes = store.apply("van-1", "product", "chilled", both, T0 + 31 * 60_000, 1, ["mqtt"])
    # each change carries the breach as that transition left it (the InfluxDB point's state)
    assert [(c.transition, c.breach.state, c.breach.end_ts) for c in changes] == [
        ("opened", "open", None),
        ("closed", "closed", T0 + 30 * 60_000),
    ]
    # re-derived after a restart, in one batch or one at a time: nothing to log or count,
    # and the opening does not reopen what closed
    assert store.apply("van-1", "product", "chilled", both, T0 + 90 * 60_000, 1, ["mqtt"]) == []
    for e in both:
        assert store.apply("van-1", "product", "chilled", [e], T0 + 90 * 60_000, 1, []) == []
    (row,) = store.known("van-1")
    assert (row.state, row.end_ts, row.updated_at) == ("closed", T0 + 30 * 60_000, T0 + 31 * 60_000)
    assert [n.transition for n in store.due(T0 + 91 * 60_000, ["mqtt"])] == ["opened"]
