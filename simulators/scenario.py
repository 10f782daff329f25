"""Ground-truth scenarios (``simulators/scenarios/*.yaml``): a fleet with its faults, the
deliveries the ordering system creates for it, and the outcome known in advance: every
breach, every data gap, each delivery's certificate verdict.

Times in a scenario are minutes from its start (t=0: loading begins at the depot); expected
breach and gap times are on the device's clock, as the rules judge. Pure: reads files, no
other I/O. The runner (simulators.runner) plays a scenario against a running pipeline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coldtrace.deliveries.trace import iso
from coldtrace.profiles import Profile
from coldtrace.settings import Settings
from simulators.model import MINUTE_MS, VanRun, VanSpec, end_ms, route_of, simulate

SCENARIOS_DIR: Final = Path(__file__).with_name("scenarios")
Minutes = Annotated[float, Field(ge=0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerSpec(_Spec):
    """A customer as the ordering system enters it (POST /api/v1/customers, which checks the
    values): ``language`` ("en", "fr") and ``timezone`` (IANA) are its certificates'
    (None: COLDTRACE_CERTIFICATE_LANGUAGE, _TIMEZONE)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    name: str
    language: str | None = None
    timezone: str | None = None


class DeliverySpec(_Spec):
    """A delivery from the van's depot to one of its stops. ``start_min`` defaults to the
    departure from the depot, ``deliver_min`` to the departure from the stop; ``close_min``
    (default: once every message is in) is when the operator closes it."""

    ref: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,23}$")
    van: str
    compartment: str
    customer: str
    stop: int = Field(ge=1)
    profile: str | None = None
    start_min: Minutes | None = None
    deliver_min: Minutes | None = None
    close_min: Minutes | None = None
    # driver: the driver's app says start and deliver at those times (before any reading);
    # gps: they are the plan, and the API detects both from the GPS track (POST .../detect)
    # once every reading is in.
    lifecycle: Literal["driver", "gps"] = "driver"

    @model_validator(mode="after")
    def _closable(self) -> DeliverySpec:
        if self.lifecycle == "gps" and self.close_min is not None:
            raise ValueError("a GPS-detected delivery is closed once every reading is in")
        return self


class ExpectedBreach(_Spec):
    """``probe`` "" for a device-level breach (door); ``end_min`` None: still open."""

    van: str
    probe: str
    rule: str
    start_min: float
    end_min: float | None
    severity: Literal["major", "critical"]
    suppressed: bool = False


class ExpectedGap(_Spec):
    delivery: str
    van: str
    probe: str
    start_min: float
    end_min: float


Verdict = Literal["compliant", "not_compliant", "incomplete"]


class ExpectedTimes(_Spec):
    """A delivery's start and hand-over as detected from its GPS track (device time)."""

    start_min: float
    deliver_min: float


class Expected(_Spec):
    breaches: list[ExpectedBreach] = Field(default_factory=list)
    gaps: list[ExpectedGap] = Field(default_factory=list)
    verdicts: dict[str, Verdict]
    certificate_versions: dict[str, int] = Field(default_factory=dict)
    detected: dict[str, ExpectedTimes] = Field(default_factory=dict)


class IngestNeeds(_Spec):
    """Settings of ingest the scenario depends on: a van's settings profile (its door is
    judged by it: COLDTRACE_ALERTS_DEVICE_PROFILES) and suppression windows (defrost,
    COLDTRACE_ALERTS_SUPPRESS_WINDOWS), in minutes from the start."""

    device_profiles: dict[str, str] = Field(default_factory=dict)
    suppress_windows: dict[str, list[tuple[Minutes, Minutes]]] = Field(default_factory=dict)


class Scenario(_Spec):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    title: str
    seed: int = 1
    fleet: list[VanSpec] = Field(min_length=1)
    customers: list[CustomerSpec] = Field(min_length=1)
    deliveries: list[DeliverySpec] = Field(min_length=1)
    ingest: IngestNeeds = IngestNeeds()
    expected: Expected

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        vans = {v.id: v for v in self.fleet}
        customers = {c.id for c in self.customers}
        refs = {d.ref for d in self.deliveries}
        for d in self.deliveries:
            v = vans.get(d.van)
            if v is None:
                raise ValueError(f"delivery {d.ref}: no van {d.van!r}")
            if d.compartment not in {c.name for c in v.compartments}:
                raise ValueError(f"delivery {d.ref}: van {d.van} has no {d.compartment!r}")
            if d.customer not in customers:
                raise ValueError(f"delivery {d.ref}: no customer {d.customer!r}")
            if d.stop > len(v.stops):
                raise ValueError(f"delivery {d.ref}: van {d.van} has no stop {d.stop}")
        named = [b.van for b in self.expected.breaches] + [g.van for g in self.expected.gaps]
        named += list(self.ingest.device_profiles) + list(self.ingest.suppress_windows)
        for van in named:
            if van not in vans:
                raise ValueError(f"no van {van!r} in the fleet")
        gps = {d.ref for d in self.deliveries if d.lifecycle == "gps"}
        if set(self.expected.detected) != gps:
            raise ValueError("expected.detected needs the times of each GPS-detected delivery")
        for ref in [*self.expected.verdicts, *(g.delivery for g in self.expected.gaps)]:
            if ref not in refs:
                raise ValueError(f"no delivery {ref!r}")
        if set(self.expected.verdicts) != refs:
            raise ValueError("expected.verdicts needs one verdict per delivery")
        return self


class ScenarioError(Exception):
    """A scenario that cannot be used; the message names the file and the field."""


def names() -> list[str]:
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.yaml"))


def load(name_or_path: str) -> Scenario:
    """A scenario by name (simulators/scenarios/NAME.yaml) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIOS_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ScenarioError(f"no scenario {name_or_path!r}; known: {', '.join(names())}")
    try:
        return Scenario.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "scenario"
        raise ScenarioError(f"{path}: {where}: {err['msg']}") from None


# -- a scenario placed on the wall clock -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryTimes:
    spec: DeliverySpec
    start_ms: int  # absolute, epoch ms
    deliver_ms: int
    close_at: int | None  # ms from the scenario's start; None: after every message


@dataclass(frozen=True, slots=True)
class Placed:
    """A scenario on the wall clock: its vans' runs, ids prefixed for this run."""

    scenario: Scenario
    prefix: str
    epoch_ms: int
    runs: dict[str, VanRun]  # van id -> its run
    deliveries: list[DeliveryTimes]

    def device(self, van: str) -> str:
        return f"{self.prefix}-{van}"

    def at(self, minutes: float) -> int:
        return self.epoch_ms + round(minutes * MINUTE_MS)

    @property
    def duration_ms(self) -> int:
        return max(r.duration_ms for r in self.runs.values())

    def device_profiles(self) -> dict[str, str]:
        """COLDTRACE_ALERTS_DEVICE_PROFILES entries ingest needs."""
        return {self.device(v): p for v, p in self.scenario.ingest.device_profiles.items()}

    def suppress_windows(self) -> dict[str, list[tuple[str, str]]]:
        """COLDTRACE_ALERTS_SUPPRESS_WINDOWS entries ingest needs (ISO 8601, UTC)."""
        return {
            self.device(v): [(iso(self.at(a)), iso(self.at(b))) for a, b in spans]
            for v, spans in self.scenario.ingest.suppress_windows.items()
        }


def place(
    scenario: Scenario,
    prefix: str,
    profiles: dict[str, Profile],
    now_ms: int,
    close_grace_ms: int,
    start_ms: int | None = None,
) -> Placed:
    """The scenario's timeline ending a minute before ``now_ms`` (never in the future), or
    earlier so that a delivery closed before its final readings arrive (``close_min``) was
    delivered at least the API's close grace period ago; ``start_ms`` fixes it instead."""
    routes = {v.id: route_of(v, scenario.seed) for v in scenario.fleet}
    times = []
    for d in scenario.deliveries:
        r = routes[d.van]
        start = d.start_min if d.start_min is not None else r.visits[0].depart_s / 60
        deliver = d.deliver_min if d.deliver_min is not None else r.stops[d.stop - 1].depart_s / 60
        times.append((d, round(start * MINUTE_MS), round(deliver * MINUTE_MS)))
    if start_ms is None:
        ends = [end_ms(v, routes[v.id]) for v in scenario.fleet]
        epoch = now_ms - max(ends) - MINUTE_MS
        for d, _, deliver in times:
            if d.close_min is not None:
                epoch = min(epoch, now_ms - close_grace_ms - deliver - MINUTE_MS)
    else:
        epoch = start_ms
    runs = {
        v.id: simulate(v, f"{prefix}-{v.id}", profiles, epoch, scenario.seed)
        for v in scenario.fleet
    }
    deliveries = [
        DeliveryTimes(
            d,
            epoch + start,
            epoch + deliver,
            None if d.close_min is None else round(d.close_min * MINUTE_MS),
        )
        for d, start, deliver in times
    ]
    return Placed(scenario, prefix, epoch, runs, deliveries)


def missing_settings(placed: Placed, settings: Settings, now_ms: int) -> dict[str, str]:
    """The COLDTRACE_ALERTS_* settings the scenario needs that ``settings`` lack (the whole
    value each should have), empty when it can run from ``now_ms``."""
    have = {
        d: {(round(a.timestamp() * 1000), round(b.timestamp() * 1000)) for a, b in w}
        for d, w in settings.alerts_suppress_windows.items()
    }
    ok = {
        "COLDTRACE_ALERTS_DEVICE_PROFILES": all(
            settings.alerts_device_profiles.get(d) == p for d, p in placed.device_profiles().items()
        ),
        "COLDTRACE_ALERTS_SUPPRESS_WINDOWS": all(
            {(placed.at(a), placed.at(b)) for a, b in spans} <= have.get(placed.device(v), set())
            for v, spans in placed.scenario.ingest.suppress_windows.items()
        ),
        # ten minutes for the run itself
        "COLDTRACE_ALERTS_SILENT_AFTER_S": settings.alerts_silent_after_s * 1000
        >= now_ms + 600_000 - placed.epoch_ms,
    }
    return {k: v for k, v in ingest_settings([placed], now_ms).items() if not ok[k]}


def silent_after_s(placed: list[Placed], now_ms: int) -> int:
    """A silence (COLDTRACE_ALERTS_SILENT_AFTER_S) longer than any reading of these scenarios
    lags behind the wall clock, and an hour for the run. The silence rule is the one rule on
    wall time: it would take a box whose compressed readings arrive hours after their device
    time for a silent one, were a delivery in transit in its view (the rules stage asks the
    store every few seconds; the runner starts and delivers each delivery before any reading)."""
    return (now_ms - min(p.epoch_ms for p in placed)) // 1000 + 3600


def ingest_settings(placed: list[Placed], now_ms: int | None = None) -> dict[str, str]:
    """The COLDTRACE_ALERTS_* settings ingest (and the API, which judges certificates by
    them) needs to run these scenarios; the silence too when ``now_ms`` is given."""
    profiles: dict[str, str] = {}
    windows: dict[str, list[tuple[str, str]]] = {}
    for p in placed:
        profiles.update(p.device_profiles())
        windows.update(p.suppress_windows())
    env = {}
    if profiles:
        env["COLDTRACE_ALERTS_DEVICE_PROFILES"] = json.dumps(profiles)
    if windows:
        env["COLDTRACE_ALERTS_SUPPRESS_WINDOWS"] = json.dumps(windows)
    if now_ms is not None:
        env["COLDTRACE_ALERTS_SILENT_AFTER_S"] = str(silent_after_s(placed, now_ms))
    return env
