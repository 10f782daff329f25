"""The master data of one chilled van, made through the API as an operator makes it: the van
with one chilled compartment, its logger, and the logger's product and air probes assigned to
that compartment. Shared by the API tests, the delivery trace test and the trace benchmark,
each calling the API with its own client."""

from __future__ import annotations

from typing import Any, Protocol

COMPARTMENT = "chiller"


class Call(Protocol):
    """One API call: (method, path under /api/v1, JSON body) -> the response body."""

    def __call__(self, method: str, path: str, *, json: Any) -> Any: ...


def register_chilled_van(call: Call, vehicle: str, device: str, valid_from: str) -> None:
    """``valid_from``: ISO 8601 start of the probe assignments."""
    chiller = {"name": COMPARTMENT, "profile": "chilled"}
    call("POST", "/vehicles", json={"id": vehicle, "name": "Van", "compartments": [chiller]})
    call("POST", "/devices", json={"id": device, "label": "logger"})
    for probe in ("product", "air"):
        assignment = {"probe": probe, "vehicle_id": vehicle, "compartment": COMPARTMENT}
        call(
            "POST",
            f"/devices/{device}/assignments",
            json={**assignment, "valid_from": valid_from},
        )
