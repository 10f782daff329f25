"""`coldtrace demo` (`make demo`): the `demo` scenario (simulators/scenarios/demo.yaml) through
every part, and what became of it.

A dozen vans leave a Lyon depot, each with one delivery at its last stop for a caterer, a
hospital lab or a school canteen; van 3's compressor fails, van 7's door is left open. The
scenario runner (simulators.runner) enters them through the API as the operator and the
ordering system would, publishes what each sensor box sends, and compares what the pipeline
found with what the scenario expects. This module reads the rest back: the books per van and
each delivery's verdict, breaches and certificate.

Every run is a new round with vans and boxes of its own (``demo<N>-van-01``...): a box's
readings are placed at device time, and a second round of the same box over the same morning
would sit on top of the first. The round ends before the demo starts: no reading is ever in
the future.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import httpx

from ingest.report import Landed
from simulators.scenario import Placed

SCENARIO: Final = "demo"
NO_CERTIFICATE: Final = "(none yet)"  # the verdict column of a delivery not closed

Call = Callable[..., Any]


class DemoFailed(Exception):
    """The API refused a request of the demo; the message says which."""


def next_round(run_dir: Path) -> int:
    """The number of this demo round (1, 2, ...), counted in the run directory."""
    counter = run_dir / "demo-rounds"
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(f"{n}\n")
    return n


def books(sent: Counter[str], landed: Mapping[str, Landed]) -> list[dict[str, object]]:
    """Per box: sent (what ingest acknowledged, `Runner.acknowledged`) against its books
    (ingest/books.py): stored + held (for their clock) + rejected + missing (seq gaps); lost is
    what is left over. `landed`: ingest.report.landed of the same boxes."""
    rows: list[dict[str, object]] = []
    for device, n in sorted(sent.items()):
        b = landed[device].books
        lo, hi = landed[device].product_c or (float("nan"), float("nan"))
        rows.append(
            {
                "van": device,
                "sent": n,
                "stored": b.stored,
                "held": b.held,
                "rejected": b.rejected,
                "missing": b.missing,
                "lost": n - b.sent,
                "product_min_c": f"{lo:.1f}",
                "product_max_c": f"{hi:.1f}",
            }
        )
    return rows


def hhmm(value: str | None) -> str:
    """An API time (ISO 8601 UTC) as HH:MM, for the tables."""
    return "" if value is None else value[11:16]


def deliveries(
    call: Call, placed: Placed
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(one row per delivery: customer, profile, times, verdict and where its certificate is;
    one row per breach of a delivery: probe, rule, severity, start, end, peak)."""
    names = {c.id: c.name for c in placed.scenario.customers}
    rows: list[dict[str, object]] = []
    breaches: list[dict[str, object]] = []
    for spec in placed.scenario.deliveries:
        found = call("GET", "/deliveries", params={"reference": f"{placed.prefix}-{spec.ref}"})
        d = found["items"][0]
        certificates = call("GET", f"/deliveries/{d['id']}/certificates")
        its = call("GET", f"/deliveries/{d['id']}/breaches")
        rows.append(
            {
                "delivery": d["id"],
                "customer": names[spec.customer],
                "van": d["vehicle_id"],
                "profile": d["profile"],
                "started": hhmm(d["started"]),
                "delivered": hhmm(d["delivered"]),
                "verdict": certificates[0]["verdict"] if certificates else NO_CERTIFICATE,
                "breaches": len(its),
                "certificate": f"/api/v1/deliveries/{d['id']}/certificates",
            }
        )
        breaches += [
            {
                "delivery": d["id"],
                "van": d["vehicle_id"],
                "probe": b["probe"] or "(box)",
                "rule": b["rule"],
                "severity": b["severity"],
                "start": hhmm(b["start"]),
                "end": hhmm(b["end"]) if b["end"] else "open",
                "peak_c": "" if b["peak"] is None else f"{b['peak']:.1f}",
            }
            for b in its
        ]
    return rows, breaches


def api_client(base: str, key: str) -> Call:
    """A call under /api/v1 with the key: the response body, or DemoFailed."""
    http = httpx.Client(
        base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )

    def call(method: str, path: str, *, params: dict[str, str] | None = None) -> Any:
        r = http.request(method, path, params=params)
        if r.status_code >= 400:
            raise DemoFailed(f"the API refused {method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    return call


# Where the demo's API links deliveries when COLDTRACE_GRAFANA_URL is not set: a Grafana on
# this machine (the compose stack's port).
GRAFANA_DEFAULT = "http://localhost:3000"


def dashboard_link(call: Call, rows: list[dict[str, object]]) -> tuple[object, str]:
    """(delivery id, its Delivery dashboard link from the API) of the delivery with the most
    breaches: the one worth opening."""
    worst = max(rows, key=lambda r: int(str(r["breaches"])))
    found = call("GET", f"/deliveries/{worst['delivery']}")
    return worst["delivery"], str(found["dashboard_url"])


def grafana_hint(grafana_url: str, influx_url: str, delivery: object, link: str) -> str:
    """How to see the demo in Grafana: push the dashboards, then open one delivery."""
    return (
        "\nIn Grafana (dashboards/README.md): put coldtrace's dashboards, their InfluxDB "
        "datasource and alert rules into yours with\n"
        f"  coldtrace dashboards push --url {grafana_url} --token <service account token, "
        f"Editor> --influx-url {influx_url}\n"
        f"then open delivery {delivery}'s Delivery dashboard:\n  {link}"
    )
