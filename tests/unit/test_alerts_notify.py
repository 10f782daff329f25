"""What the notifiers send: the webhook signature and the e-mail text."""

from __future__ import annotations

import hashlib
import hmac
import json

from alerts.notify import alerts_topic, email_text, sign


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"transition": "opened"}'
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(b"k", body) == f"sha256={expected}"
    assert sign(b"other", body) != sign(b"k", body)


def test_alerts_topic() -> None:
    assert alerts_topic("van-01") == "coldtrace/v1/alerts/van-01"


def test_email_reads_as_a_sentence_then_carries_the_document() -> None:
    payload = json.dumps(
        {
            "transition": "closed",
            "device": "van-01",
            "probe": "product",
            "rule": "excursion_high",
            "profile": "chilled",
            "severity": "major",
            "start": "2026-07-14T06:45:00Z",
            "end": "2026-07-14T07:04:00Z",
            "peak_c": 7.6,
            "limit_c": 4.0,
            "degree_minutes": 36.6,
            "detected_late": True,
            "detected_at": "2026-07-14T07:30:00Z",
        }
    )
    text = email_text(payload)
    assert text.splitlines()[:4] == [
        "Breach closed: excursion_high on van-01 probe product (profile chilled).",
        "Severity: major; start 2026-07-14T06:45:00Z; end 2026-07-14T07:04:00Z.",
        "Peak 7.6 C against the limit 4.0 C; 36.6 degree-minutes.",
        "Found late: detected at 2026-07-14T07:30:00Z.",
    ]
    assert text.endswith(payload)
