"""Who may call what: missing and revoked keys, the role matrix for every route, and a
customer's key kept to its own customer's objects (404 for anyone else's, lists that never
leak), on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from coldtrace.api.keys import revoke_key
from coldtrace.deliveries.models import ApiKey, Delivery
from coldtrace.deliveries.store import Store
from tests.conftest import Api
from tests.world import MIN, T0, add_breach, plan, setup_fleet

ADMIN, QUALITY, DISPATCHER, CUSTOMER = "admin", "quality", "dispatcher", "customer"
EVERYONE = {ADMIN, QUALITY, DISPATCHER, CUSTOMER}
STAFF = {ADMIN, QUALITY, DISPATCHER}
OPERATORS = {ADMIN, QUALITY}


@dataclass
class World:
    vehicle: str
    device: str
    own: int  # acme's delivery (the customer key is acme's)
    other: int  # bistro's delivery
    own_breach: int
    other_breach: int
    own_certificate: int
    other_certificate: int


@pytest.fixture
def world(api: Api, prefix: str) -> World:
    vehicle, device = f"{prefix}-van", f"{prefix}-logger"
    setup_fleet(api, vehicle, device)
    own = api.ok("POST", "/deliveries", json=plan(vehicle, "acme", T0))["id"]
    other = api.ok("POST", "/deliveries", json=plan(vehicle, "bistro", T0 + 120 * MIN))["id"]
    own_breach = add_breach(api, device, T0 + 10 * MIN, T0 + 20 * MIN)
    other_breach = add_breach(api, device, T0 + 130 * MIN, T0 + 140 * MIN)
    certificates = []
    with api.app.state.sessions() as session:
        store = Store(session, "test")
        for delivery_id in (own, other):
            d = session.get(Delivery, delivery_id)
            assert d is not None
            body = {"id": delivery_id}
            key = api.settings.certificate_key
            certificates.append(store.issue_certificate(d, "compliant", body, key).id)
        session.commit()
    return World(vehicle, device, own, other, own_breach, other_breach, *certificates)


def routes(w: World) -> list[tuple[str, str, dict[str, Any] | None, set[str]]]:
    """Every route of the API with a request a caller of an allowed role may make."""
    assignment = {"probe": "spare", "vehicle_id": w.vehicle, "compartment": "chiller"}
    return [
        ("GET", "/customers", None, EVERYONE),
        ("POST", "/customers", {"id": "newco", "name": "New"}, {ADMIN}),
        ("PUT", "/customers/acme/contacts", {"contact_emails": ["a@acme.test"]}, {ADMIN}),
        ("GET", "/customers/acme", None, EVERYONE),
        ("GET", "/vehicles", None, STAFF),
        ("POST", "/vehicles", {"id": "v2", "name": "V", "compartments": [{"name": "a"}]}, {ADMIN}),
        ("GET", f"/vehicles/{w.vehicle}", None, STAFF),
        ("GET", "/devices", None, STAFF),
        ("POST", "/devices", {"id": "dev-new"}, {ADMIN}),
        ("GET", f"/devices/{w.device}", None, STAFF),
        ("POST", f"/devices/{w.device}/assignments", assignment, OPERATORS),
        ("GET", f"/devices/{w.device}/assignments", None, STAFF),
        ("GET", f"/devices/{w.device}/books", None, STAFF),
        ("GET", "/deliveries", None, EVERYONE),
        ("POST", "/deliveries", plan(w.vehicle), STAFF),
        ("GET", f"/deliveries/{w.own}", None, EVERYONE),
        ("POST", f"/deliveries/{w.own}/transitions", {"action": "start"}, STAFF),
        ("POST", f"/deliveries/{w.own}/detect", None, STAFF),
        ("POST", f"/deliveries/{w.own}/reevaluate", None, OPERATORS),
        ("GET", f"/deliveries/{w.own}/trace", None, EVERYONE),
        ("GET", f"/deliveries/{w.own}/readings", None, EVERYONE),
        ("GET", f"/deliveries/{w.own}/breaches", None, EVERYONE),
        ("GET", f"/deliveries/{w.own}/certificates", None, EVERYONE),
        ("GET", "/breaches", None, EVERYONE),
        ("GET", f"/breaches/{w.own_breach}", None, EVERYONE),
        ("GET", f"/certificates/{w.own_certificate}", None, EVERYONE),
        ("GET", "/certificates/public-key", None, EVERYONE),
        ("GET", "/fleet", None, STAFF),
        ("GET", "/audit", None, OPERATORS),
        ("DELETE", f"/deliveries/{w.own}", None, {ADMIN}),  # refused (409): not closed
    ]


def customers_404(w: World) -> set[str]:
    """Routes a customer's key gets 404 from, as for anything not its own (not 403: the
    answer does not even say the device exists)."""
    return {f"/devices/{w.device}/books"}


def call(api: Api, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return api.client.request(method, f"/api/v1{path}", json=body, headers=headers)


def test_every_route_is_covered(api: Api, world: World) -> None:
    listed = {(m, p) for m, p, _, _ in routes(world)}
    for route in api.app.routes:
        path = getattr(route, "path", "")
        # No key on purpose: health, and the public verification (test_certificate_public).
        if not path.startswith("/api/v1/") or path == "/api/v1/health" or "/public/" in path:
            continue
        for method in getattr(route, "methods", set()) - {"HEAD"}:
            concrete = (
                path.replace("{delivery_id}", str(world.own))
                .replace("{customer_id}", "acme")
                .replace("{vehicle_id}", world.vehicle)
                .replace("{device_id}", world.device)
                .replace("{breach_id}", str(world.own_breach))
                .replace("{certificate_id}", str(world.own_certificate))
            )
            assert (method, concrete.removeprefix("/api/v1")) in listed, (method, path)


def test_missing_unknown_and_revoked_keys_get_401(api: Api, world: World) -> None:
    revoked = api.key(QUALITY)
    with api.app.state.sessions() as session:
        newest = max(session.scalars(select(ApiKey.id)))
        revoke_key(Store(session, "test"), newest)
        session.commit()
    for headers in ({}, {"Authorization": "Bearer ct_not-a-key"}, revoked):
        for method, path, body, _ in routes(world):
            r = call(api, method, path, body, headers)
            assert r.status_code == 401, (headers, method, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.headers["content-type"] == "application/problem+json"


def test_role_matrix(api: Api, world: World) -> None:
    keys = {role: api.key(role, "acme" if role == CUSTOMER else None) for role in EVERYONE}
    hidden = customers_404(world)
    for method, path, body, allowed in routes(world):
        for role, headers in sorted(keys.items()):
            r = call(api, method, path, body, headers)
            if role in allowed:
                assert r.status_code not in (401, 403, 404), (role, method, path, r.text)
            elif role == CUSTOMER and path in hidden:
                assert r.status_code == 404, (role, method, path, r.text)
            else:
                assert r.status_code == 403, (role, method, path, r.text)


def test_customer_sees_only_its_own(api: Api, world: World) -> None:
    acme = api.key(CUSTOMER, "acme")
    hidden = [
        "/customers/bistro",
        f"/deliveries/{world.other}",
        f"/deliveries/{world.other}/trace",
        f"/deliveries/{world.other}/readings",
        f"/deliveries/{world.other}/breaches",
        f"/deliveries/{world.other}/certificates",
        f"/breaches/{world.other_breach}",
        f"/certificates/{world.other_certificate}",
    ]
    for path in hidden:
        r = api.client.get(f"/api/v1{path}", headers=acme)
        assert r.status_code == 404, (path, r.text)
        # Exactly what an id that does not exist gets: nothing tells the two apart.
        missing = path.replace(str(world.other), "999999").replace("bistro", "nobody")
        for n in (world.other_breach, world.other_certificate):
            missing = missing.replace(f"/{n}", "/999999")
        gone = api.client.get(f"/api/v1{missing}", headers=acme)
        assert gone.status_code == 404
        assert set(r.json()) == set(gone.json())
        assert r.json()["title"] == gone.json()["title"]

    own = {"/deliveries": [world.own], "/breaches": [world.own_breach], "/customers": ["acme"]}
    for path, ids in own.items():
        for params in ({}, {"limit": 500}, {"customer_id": "bistro"}):
            items = api.ok("GET", path, headers=acme, params=params)["items"]
            if path == "/deliveries" and "customer_id" in params:
                ids = []  # acme's deliveries of customer bistro: none
            assert [i["id"] for i in items] == ids, (path, params)
    staff = api.ok("GET", "/breaches")["items"]
    assert {(b["id"], b["delivery_id"]) for b in staff} == {
        (world.own_breach, world.own),
        (world.other_breach, world.other),
    }
    # Nor can a customer act on its own delivery.
    r = call(api, "POST", f"/deliveries/{world.own}/transitions", {"action": "cancel"}, acme)
    assert r.status_code == 403
    assert api.ok("GET", f"/deliveries/{world.own}", headers=acme)["state"] == "planned"
