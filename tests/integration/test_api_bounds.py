"""Out-of-range input answers 422 (or 404) with a problem detail and commits nothing, for
any role, on SQLite and PostgreSQL (issue 12's cases); anything unexpected is a 500 problem
detail with a request id that the log names, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import Api
from tests.world import T0, plan

TOO_BIG = "99999999999999999999"
MAX_ID = 2**31 - 1  # INTEGER ids: 32-bit in PostgreSQL
MAX_OFFSET = 2**63 - 1


def problem(api: Api, method: str, path: str, status: int, **kw: Any) -> dict[str, Any]:
    r = api.client.request(method, f"/api/v1{path}", headers=kw.pop("headers", api.admin), **kw)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize(
    "path",
    [
        f"/deliveries/{TOO_BIG}",
        f"/deliveries/{TOO_BIG}/trace",
        f"/deliveries/{TOO_BIG}/readings",
        f"/deliveries/{TOO_BIG}/breaches",
        f"/deliveries/{TOO_BIG}/certificates",
        f"/breaches/{TOO_BIG}",
        f"/certificates/{TOO_BIG}",
        f"/deliveries/{MAX_ID + 1}",
        f"/deliveries?offset={TOO_BIG}0",
        f"/breaches?offset={TOO_BIG}",
        "/deliveries?planned_after=0001-01-01T00:00:00",
        "/deliveries?planned_before=2262-04-12T00:00:00Z",
    ],
)
def test_out_of_range_ids_offsets_and_times_are_422(
    api: Api,
    fleet: tuple[str, str],
    path: str,
) -> None:
    customer = api.key("customer", "acme")
    for who in (api.admin, customer):
        assert problem(api, "GET", path, 422, headers=who)["detail"]


def test_the_largest_storable_id_and_offset_are_answered(api: Api) -> None:
    assert problem(api, "GET", f"/deliveries/{MAX_ID}", 404)["detail"]
    assert problem(api, "GET", f"/certificates/{MAX_ID}", 404)["detail"]
    page = api.ok("GET", f"/deliveries?offset={MAX_OFFSET}")
    assert (page["items"], page["offset"]) == ([], MAX_OFFSET)


@pytest.mark.parametrize(
    "change",
    [
        {"planned_start": "0001-01-01T00:00:00+14:00"},
        {"planned_start": "1969-12-31T23:59:59Z"},
        {"planned_end": "2263-01-01T00:00:00Z"},
        {"planned_end": "9999-12-31T23:59:59-14:00"},
    ],
)
def test_a_delivery_out_of_range_is_refused_and_nothing_is_stored(
    api: Api,
    fleet: tuple[str, str],
    change: dict[str, str],
) -> None:
    vehicle, _ = fleet
    field = next(iter(change))
    detail = problem(api, "POST", "/deliveries", 422, json=plan(vehicle) | change)["detail"]
    assert (
        detail == f"body.{field}: Value error, must be from 1970-01-01 to before 2200-01-01 (UTC)"
    )
    assert api.ok("GET", "/deliveries")["total"] == 0


def test_a_transition_or_assignment_out_of_range_is_refused(
    api: Api,
    fleet: tuple[str, str],
) -> None:
    vehicle, device = fleet
    d = api.ok("POST", "/deliveries", json=plan(vehicle, start=T0 + 86_400_000))
    body = {"action": "start", "at": "0001-01-01T00:00:00+14:00"}
    problem(api, "POST", f"/deliveries/{d['id']}/transitions", 422, json=body)
    assert api.ok("GET", f"/deliveries/{d['id']}")["state"] == "planned"
    assignment = {"probe": "x", "vehicle_id": vehicle, "compartment": "chiller"}
    assignment["valid_from"] = "2999-01-01T00:00:00Z"
    problem(api, "POST", f"/devices/{device}/assignments", 422, json=assignment)
    assert {a["probe"] for a in api.ok("GET", f"/devices/{device}/assignments")} == {
        "product",
        "air",
    }


def test_an_unexpected_error_is_a_500_problem_with_a_request_id(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise RuntimeError("secret internals")

    api.app.add_api_route("/api/v1/boom", boom)
    with caplog.at_level(logging.ERROR, logger="coldtrace.api.problems"):
        r = api.client.get("/api/v1/boom", headers=api.admin)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    request_id = body["request_id"]
    assert r.headers["X-Request-ID"] == request_id and len(request_id) == 32
    assert body["detail"] == f"internal error: quote request id {request_id}"
    assert "secret internals" not in r.text and "Traceback" not in r.text
    [record] = [rec for rec in caplog.records if request_id in rec.getMessage()]
    assert record.exc_info is not None and "secret internals" in str(record.exc_info[1])
