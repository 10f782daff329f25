"""The outbox worker against a real local HTTP receiver that fails, then recovers: the
notification is retried with backoff (injected clock) and sent once, signed. On a migrated
store, SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import pytest

from alerts.notify import SIGNATURE_HEADER, Notifier, Webhook
from alerts.rules import BreachClosed, BreachOpened, BreachRecord
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
