"""What a certificate says (coldtrace/certificates/content.py), on a scripted delivery: one
product excursion, one data gap on the air probe, and the air probe's calibration expired.
The body is compared whole with a golden file (tests/fixtures/certificates/)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from alerts.evaluation import Evaluation, LiveBreach, Position, evaluate, locate
from alerts.rules import Sample
from coldtrace.certificates.content import (
    COMPLIANT,
    INCOMPLETE,
    Calibration,
    Context,
    Place,
    calibration_status,
    certificate_body,
)
from coldtrace.profiles import load_profiles

GOLDEN = Path(__file__).parents[1] / "fixtures" / "certificates" / "scripted-body.json"
T0 = 1_767_600_000_000  # 2026-01-05T08:00:00Z (09:00 in Paris)
MIN = 60_000
HOURS = 2
DEVICE = "van-07"
DAY = 24 * 60 * MIN
# Pharmaceutical, refrigerated (+2..+8 C), as a fleet that keeps calibration records runs
# it: calibration required.
PROFILE = load_profiles()["pharma"].model_copy(update={"calibration_required": True})


def product_c(minute: int) -> float:
    """5 C, but 9.5 C from minute 30 to 49: 20 minutes above +8 C, past the 10-min delay."""
    return 9.5 if 30 <= minute < 50 else 5.0


def air_c(minute: int) -> float | None:
    """4 C, but nothing from minute 71 to 89: a 20-minute data gap (fault_delay 10 min)."""
    return None if 71 <= minute < 90 else 4.0


def samples() -> dict[tuple[str, str], list[Sample]]:
    """One reading a minute of both probes over the two hours (the air probe's missing)."""
    minutes = range(HOURS * 60 + 1)
    return {
        (DEVICE, "product"): [Sample(T0 + m * MIN, m, product_c(m)) for m in minutes],
        (DEVICE, "air"): [
            Sample(T0 + m * MIN, m, c) for m in minutes if (c := air_c(m)) is not None
        ],
    }


def track() -> list[Position]:
    """From Rungis (48.757, 2.351) north-east to the drop-off, one fix a minute."""
    return [
        Position(T0 + m * MIN, round(48.757 + m * 0.0004, 6), round(2.351 + m * 0.0004, 6))
        for m in range(HOURS * 60 + 1)
    ]


def scripted_evaluation() -> Evaluation:
    """The evaluation as judge() makes it: the live stage found the same excursion."""
    live = [LiveBreach(DEVICE, "product", "excursion_high", T0 + 30 * MIN, False, 11)]
    e = evaluate(samples(), PROFILE, {}, T0, T0 + HOURS * 60 * MIN, live=live)
    return locate(e, {DEVICE: track()})


CALIBRATIONS = {
    (DEVICE, "product"): [
        Calibration(T0 - 400 * DAY, T0 - 35 * DAY, "CAL-2024-117"),
        Calibration(T0 - 30 * DAY, T0 + 335 * DAY, "CAL-2025-342"),
    ],
    (DEVICE, "air"): [Calibration(T0 - 380 * DAY, T0 - 15 * DAY, "CAL-2024-118")],
}

CONTEXT = Context(
    issuer_name="Frigo Transports SAS",
    issuer_address="12 rue des Halles\n94150 Rungis",
    signer_name="coldtrace automated certification",
    customer_name="Hôpital Nord, laboratoire",
    language="fr",
    timezone="Europe/Paris",
    vehicle_name="Van 7",
    pickup=Place("MIN Rungis", 48.757, 2.351),
    dropoff=Place("Hôpital Nord, labo", 48.805, 2.399),
    signed_at=T0 + 3 * 60 * MIN,
    calibrations=CALIBRATIONS,
)

DELIVERY = {
    "delivery_id": 42,
    "reference": "ORD-4711",
    "customer_id": "hopital-nord",
    "profile": "pharma",
    "vehicle_id": "van-07",
    "compartment": "chiller",
    "state": "closed",
}


def scripted_body() -> tuple[str, dict[str, Any]]:
    return certificate_body(DELIVERY, scripted_evaluation(), CONTEXT)


def test_the_scripted_deliverys_body_is_the_golden_one() -> None:
    verdict, body = scripted_body()
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert body == golden
    assert verdict == body["verdict"] == "not_compliant"


def test_what_the_golden_body_says() -> None:
    """The facts a reader checks first, spelled out (the golden file holds the rest)."""
    _, body = scripted_body()
    [excursion] = [b for b in body["breaches"] if b["rule"] == "excursion_high"]
    assert (excursion["start"], excursion["end"], excursion["peak_c"]) == (
        "2026-01-05T08:30:00Z",
        "2026-01-05T08:50:00Z",
        9.5,
    )
    assert excursion["where"] == {"lat": 48.769, "lon": 2.363}
    assert [(g["probe"], g["start"], g["end"]) for g in body["gaps"]] == [
        ("air", "2026-01-05T09:10:00Z", "2026-01-05T09:30:00Z")
    ]
    product, air = (
        next(p for p in body["probes"] if p["probe"] == name) for name in ("product", "air")
    )
    assert product["calibration"] == {
        "status": "valid",
        "calibrated": "2025-12-06T08:00:00Z",
        "due": "2026-12-06T08:00:00Z",
        "reference": "CAL-2025-342",
    }
    assert air["calibration"]["status"] == "expired"
    assert (
        "calibration of van-07/air expired 2025-12-21T08:00:00Z (CAL-2024-118)" in (body["reasons"])
    )
    assert body["pickup"]["time"] == "2026-01-05T09:00:00+01:00"
    assert body["dropoff"]["time"] == "2026-01-05T11:00:00+01:00"
    assert body["signer"]["signed_at"] == "2026-01-05T11:00:00Z"
    assert body["judged_against"]["regulation"] == PROFILE.regulation


def in_range() -> Evaluation:
    readings = {(DEVICE, "product"): [Sample(T0 + m * MIN, m, 5.0) for m in range(61)]}
    return evaluate(readings, PROFILE, {}, T0, T0 + 60 * MIN, live=[])


def test_a_missing_calibration_makes_a_compliant_delivery_incomplete() -> None:
    e = in_range()
    verdict, body = certificate_body(DELIVERY, e, CONTEXT)  # product: valid
    assert (verdict, body["reasons"]) == (COMPLIANT, [])
    no_records = certificate_body(DELIVERY, e, replace(CONTEXT, calibrations={}))
    assert no_records[0] == INCOMPLETE
    assert no_records[1]["reasons"] == ["no calibration of van-07/product before the delivery"]


def test_without_a_calibration_requirement_it_is_stated_but_not_judged() -> None:
    e = in_range()
    relaxed = replace(e, profile=load_profiles()["pharma"])
    verdict, body = certificate_body(DELIVERY, relaxed, replace(CONTEXT, calibrations={}))
    assert (verdict, body["reasons"]) == (COMPLIANT, [])
    assert body["probes"][0]["calibration"]["status"] == "missing"


def test_calibration_status_over_the_window() -> None:
    made, due = T0 - DAY, T0 + DAY
    record = Calibration(made, due, "C")
    assert calibration_status([record], T0, T0 + 60 * MIN) == ("valid", record)
    assert calibration_status([record], T0, due + 1) == ("expired", record)  # during the trip
    assert calibration_status([record], made - 1, T0) == ("missing", None)  # made after start
    assert calibration_status([], T0, T0) == ("missing", None)
