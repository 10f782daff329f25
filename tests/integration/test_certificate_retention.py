"""Keeping certificates, on SQLite and PostgreSQL: every version stays retrievable and
verifiable; deleting a delivery with its certificates is refused until its newest version is
COLDTRACE_CERTIFICATE_RETENTION_DAYS old, then done and written in the audit log."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from coldtrace.deliveries.models import Certificate, Delivery
from coldtrace.deliveries.store import Conflict, Store
from tests.conftest import Api
from tests.world import MIN, T0, add_breach, plan

DAY = 86_400_000


def test_deletion_is_refused_until_the_newest_version_is_old_enough(
    api: Api,
    fleet: tuple[str, str],
    closed_delivery: int,
) -> None:
    _, device = fleet
    add_breach(api, device, T0 + 15 * MIN, T0 + 25 * MIN)
    _, v1 = api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    r = api.client.delete(f"/api/v1/deliveries/{closed_delivery}", headers=api.admin)
    assert r.status_code == 409
    assert "kept until" in r.json()["detail"] and "730 days" in r.json()["detail"]
    # Nothing changed: both versions still there, each with its page.
    assert [c["version"] for c in api.ok("GET", f"/deliveries/{closed_delivery}/certificates")] == [
        2,
        1,
    ]
    assert api.client.get(f"/v/{v1['body']['public_id']}").status_code == 200
    quality = api.key("quality")
    r = api.client.delete(f"/api/v1/deliveries/{closed_delivery}", headers=quality)
    assert r.status_code == 403

    newest = v2_issued_ms(api, closed_delivery)
    with api.app.state.sessions() as session:
        d = session.get_one(Delivery, closed_delivery)
        early = Store(session, "admin", clock=lambda: newest + 730 * DAY - 1)
        with pytest.raises(Conflict, match="kept until"):
            early.delete_delivery(d, 730)
        Store(session, "admin", clock=lambda: newest + 730 * DAY).delete_delivery(d, 730)
        session.commit()
    assert (
        api.client.get(f"/api/v1/deliveries/{closed_delivery}", headers=api.admin).status_code
        == 404
    )
    assert api.client.get(f"/v/{v1['body']['public_id']}").status_code == 404
    [entry] = [
        e
        for e in api.ok("GET", f"/audit?entity=delivery&entity_id={closed_delivery}")["items"]
        if e["action"] == "delivery.delete"
    ]
    assert (entry["actor"], entry["old"]["certificate_versions"], entry["new"]) == (
        "admin",
        2,
        None,
    )
    # The issue of each version stays in the audit log.
    issued = [
        e["new"]["version"]
        for e in api.ok("GET", "/audit?entity=certificate")["items"]
        if e["action"] == "certificate.issue"
    ]
    assert sorted(issued) == [1, 2]


def v2_issued_ms(api: Api, delivery: int) -> int:
    with api.app.state.sessions() as session:
        newest = select(Certificate.issued_ms).filter_by(delivery_id=delivery, version=2)
        return int(session.scalars(newest).one())


def test_an_open_delivery_is_not_deleted(api: Api, fleet: tuple[str, str]) -> None:
    d = api.ok("POST", "/deliveries", json=plan(fleet[0]))["id"]
    r = api.client.delete(f"/api/v1/deliveries/{d}", headers=api.admin)
    assert (r.status_code, r.json()["detail"]) == (
        409,
        f"delivery {d} is planned: only a closed or cancelled delivery may be deleted",
    )
    api.ok("POST", f"/deliveries/{d}/transitions", json={"action": "cancel"})
    r = api.client.delete(f"/api/v1/deliveries/{d}", headers=api.admin)  # no certificate
    assert r.status_code == 204
    assert api.client.get(f"/api/v1/deliveries/{d}", headers=api.admin).status_code == 404
