"""Expected against found (simulators.compare), on API bodies made by hand: what counts as
the same breach, and each way of being wrong."""

from __future__ import annotations

from typing import Any

import pytest

from coldtrace.deliveries.trace import iso
from coldtrace.profiles import load_profiles
from simulators import scenario
from simulators.compare import DeliveryFound, Found, compare

NOW = 1_790_000_000_000
MIN = 60_000


@pytest.fixture(scope="module")
def mixed() -> scenario.Placed:
    # expects on van-i/product: excursion_high t+37.2..t+75.983 and cumulative
    # t+67.983..t+84.983, both major; MX-1 not_compliant
    return scenario.place(scenario.load("mixed-probe-box"), "p", load_profiles(), NOW, 0)


def breach(
    p: scenario.Placed, rule: str, start: float, end: float | None, **kw: Any
) -> dict[str, Any]:
    return {
        "id": 1,
        "device": p.device("van-i"),
        "probe": "product",
        "rule": rule,
        "start": iso(p.at(start)),
        "end": None if end is None else iso(p.at(end)),
        "severity": "major",
        "suppressed": False,
        **kw,
    }


def as_found(
    p: scenario.Placed, breaches: list[dict[str, Any]], verdict: str = "not_compliant", **body: Any
) -> Found:
    certificate = {"verdict": verdict, "body": {"breaches": breaches, "gaps": [], **body}}
    return Found(breaches, {"MX-1": DeliveryFound([certificate], breaches)})


def results(checks: list[Any]) -> list[tuple[str, str, str]]:
    return [(c.check, c.subject, c.result) for c in checks]


def test_the_expected_breaches_within_one_interval_are_all_ok(mixed: scenario.Placed) -> None:
    found = [
        breach(mixed, "excursion_high", 37.2 + 0.9, 75.983 - 0.9),  # 54 s early / late
        breach(mixed, "cumulative", 67.983, 84.983),
    ]
    checks = compare(mixed, as_found(mixed, found))
    assert results(checks) == [
        ("breach", "van-i/product excursion_high", "ok"),
        ("breach", "van-i/product cumulative", "ok"),
        ("verdict", "MX-1", "ok"),
        ("agreement", "MX-1", "ok"),
    ]
    assert checks[0].found == "t+38.1..t+75.1 major"


def test_missed_spurious_and_wrong(mixed: scenario.Placed) -> None:
    found = [
        breach(mixed, "excursion_high", 37.2 + 1.5, 75.983),  # 90 s late: another breach
        breach(mixed, "cumulative", 67.983, None, severity="critical"),  # still open, critical
    ]
    checks = compare(mixed, as_found(mixed, found, verdict="compliant"))
    assert results(checks) == [
        ("breach", "van-i/product excursion_high", "MISSED"),
        ("breach", "van-i/product cumulative", "WRONG"),
        ("breach", "van-i/product excursion_high", "SPURIOUS"),
        ("verdict", "MX-1", "WRONG"),
        ("agreement", "MX-1", "ok"),
    ]
    assert (checks[1].expected, checks[1].found) == (
        "t+68.0..t+85.0 major",
        "t+68.0..open critical",
    )


def test_a_disagreement_between_live_and_certificate_is_reported(mixed: scenario.Placed) -> None:
    found = [
        breach(mixed, "excursion_high", 37.2, 75.983),
        breach(mixed, "cumulative", 67.983, 84.983),
    ]
    certificate = {"verdict": "not_compliant", "body": {"breaches": found[:1], "gaps": []}}
    checks = compare(mixed, Found(found, {"MX-1": DeliveryFound([certificate], found)}))
    assert checks[-1].result == "WRONG"
    assert checks[-1].found == "live product cumulative only"
    said = {"rule": "cumulative", "probe": "product", "found_by": "live"}
    checks = compare(mixed, as_found(mixed, found, disagreements=[said]))
    assert checks[-1].found == "certificate says cumulative on product found by live only"


def test_gaps_and_versions() -> None:
    p = scenario.place(scenario.load("probe-disconnected"), "p", load_profiles(), NOW, 0)
    fault = breach(p, "probe_fault", 25.383, 45.433) | {"device": p.device("van-f")}
    gap = {
        "device": p.device("van-f"),
        "probe": "product",
        "start": iso(p.at(24.383)),
        "end": iso(p.at(45.433)),
    }
    other = gap | {"start": iso(p.at(50)), "end": iso(p.at(61))}
    certificate = {"verdict": "incomplete", "body": {"breaches": [fault], "gaps": [gap, other]}}
    checks = compare(p, Found([fault], {"PD-1": DeliveryFound([certificate], [fault])}))
    assert results(checks) == [
        ("breach", "van-f/product probe_fault", "ok"),
        ("verdict", "PD-1", "ok"),
        ("gap", "PD-1 van-f/product", "ok"),
        ("gap", f"PD-1 {p.device('van-f')}/product", "SPURIOUS"),
        ("agreement", "PD-1", "ok"),
    ]
    tunnel = scenario.place(scenario.load("tunnel-backlog"), "t", load_profiles(), NOW, 0)
    one = {"verdict": "not_compliant", "body": {"breaches": [], "gaps": []}}
    checks = compare(tunnel, Found([], {"TU-1": DeliveryFound([one], [])}))
    assert ("versions", "TU-1", "WRONG") in results(checks)


def test_an_unhealthy_pipeline_is_a_mismatch(mixed: scenario.Placed) -> None:
    found = [
        breach(mixed, "excursion_high", 37.2, 75.983),
        breach(mixed, "cumulative", 67.983, 84.983),
    ]
    sick = Found(
        found,
        as_found(mixed, found).deliveries,
        {"ingest": ["rules: van-i/air quarantined: ValueError"], "api": []},
    )
    assert results(compare(mixed, sick))[-2:] == [
        ("health", "ingest", "WRONG"),
        ("health", "api", "ok"),
    ]


def test_times_detected_from_the_gps_track() -> None:
    p = scenario.place(scenario.load("gps-detected"), "g", load_profiles(), NOW, 0)
    certificate = {"verdict": "compliant", "body": {"breaches": [], "gaps": []}}

    def detected(started: float, delivered: float | None) -> tuple[str, str, str]:
        delivery = {
            "started": iso(p.at(started)),
            "delivered": None if delivered is None else iso(p.at(delivered)),
        }
        found = Found([], {"GP-1": DeliveryFound([certificate], [], delivery)})
        [check] = [c for c in compare(p, found) if c.check == "detected"]
        return (check.expected, check.found, check.result)

    assert detected(16.5, 46.35) == ("t+16.0..t+46.4", "t+16.5..t+46.4", "ok")
    assert detected(16.0, 47.5) == ("t+16.0..t+46.4", "t+16.0..t+47.5", "WRONG")
    assert detected(16.0, None)[2] == "WRONG"
