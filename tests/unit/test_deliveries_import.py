"""The ordering system's CSV, and what a certificate says."""

from __future__ import annotations

import pytest

from alerts.evaluation import LiveBreach, evaluate
from alerts.rules import Sample
from coldtrace.certificates.content import (
    COMPLIANT,
    NOT_COMPLIANT,
    Context,
    Place,
    certificate_body,
)
from coldtrace.deliveries.importer import COLUMNS, BadRow, parse_plans
from coldtrace.deliveries.trace import BreachMark
from coldtrace.profiles import load_profiles

HEADER = ",".join(COLUMNS)
ROW = (
    "ORD-1,lyon-lab,van-01,chiller,,MIN Rungis,48.757,2.351,Hospital,45.75,4.85,"
    "2026-11-27T07:40:00+01:00,2026-11-27T12:00:00Z"
)


def test_a_good_file() -> None:
    [plan] = parse_plans(f"{HEADER}\n{ROW}\n")
    assert (plan.reference, plan.customer_id, plan.profile) == ("ORD-1", "lyon-lab", None)
    assert plan.planned_start_ms == 1_795_761_600_000  # 06:40 UTC
    assert (plan.dropoff_lat, plan.dropoff_lon) == (45.75, 4.85)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (ROW.replace("48.757", "north"), "line 3: pickup_lat 'north' is not a number"),
        (ROW.replace("45.75", "95"), "line 3: dropoff_lat 95.0 is outside -90..90"),
        (ROW.replace("+01:00", ""), "line 3: planned_start '2026-11-27T07:40:00' has no UTC"),
        (ROW.replace("lyon-lab", ""), "line 3: customer_id is empty"),
    ],
)
def test_bad_rows_name_their_line(row: str, message: str) -> None:
    with pytest.raises(BadRow, match=message):
        parse_plans(f"{HEADER}\n{ROW}\n{row}\n")


def test_missing_columns() -> None:
    with pytest.raises(BadRow, match="line 1: missing columns planned_end"):
        parse_plans(HEADER.removesuffix(",planned_end") + "\n")


CTX = Context(
    "coldtrace", "", "signer", "ACME", "en", "UTC", "van", Place("a", 0, 0), Place("b", 1, 1), 0
)


def mark(suppressed: bool) -> BreachMark:
    return BreachMark(1, "d", "", "door_open", 0, 60_000, "major", {"suppressed": suppressed})


def test_certificate_verdict() -> None:
    readings = {("d", "air"): [Sample(m * 60_000, m, 3.0 + (m % 2) / 10) for m in range(61)]}
    chilled = load_profiles()["chilled"]
    e = evaluate(readings, chilled, {}, 0, 3_600_000, live=[])
    verdict, body = certificate_body({"delivery_id": 4}, e, CTX)
    assert verdict == COMPLIANT and body["end"] == "1970-01-01T01:00:00Z"
    assert (body["readings"], body["mean_c"], body["breaches"]) == (61, 3.05, [])
    live = [LiveBreach("d", "", "door_open", 0, True, 1)]
    e = evaluate(readings, chilled, {}, 0, 3_600_000, live=live)
    verdict, body = certificate_body({"delivery_id": 4}, e, CTX, [mark(suppressed=True)])
    assert verdict == COMPLIANT and body["breaches"][0]["suppressed"] is True
    live = [LiveBreach("d", "", "door_open", 0, False, 1)]
    e = evaluate(readings, chilled, {}, 0, 3_600_000, live=live)
    verdict, body = certificate_body({"delivery_id": 4}, e, CTX, [mark(False)])
    assert verdict == NOT_COMPLIANT and body["reasons"] == [
        "door_open on d from 1970-01-01T00:00:00Z"
    ]
