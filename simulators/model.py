"""A van of the simulated fleet over one delivery round, with its faults: what its sensor box
measures and what it puts on the wire, and when. Pure and deterministic for a given seed (no
clock, no I/O): the scenario runner publishes the messages, the tests read the readings.

Times are milliseconds from the scenario's start (t=0: loading begins at the depot); the
box's clock adds ``epoch_ms``, the wall-clock time of that start.

The physics is simulators.thermal's, the round simulators.routes', the wire behaviour
simulators.firmware's. Every reading is sampled as the firmware samples: every
``interval_s`` from the previous reading, and at once when the door opens or closes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coldtrace.contract import DS18B20_DISCONNECTED, DS18B20_POWER_ON, PROBE_ID_PATTERN
from coldtrace.profiles import Profile
from simulators import routes, thermal
from simulators.firmware import Firmware, Message

DS18B20_STEP_C: Final = 0.0625  # 12-bit resolution
NOISE_C: Final = 0.03  # standard deviation of a probe's reading noise
BOOT_MS: Final = 2_000  # from power-on to the first reading
DOOR_AFTER_ARRIVAL_S: Final = 60  # the driver opens the body a minute after stopping
MINUTE_MS: Final = 60_000

ProbeId = Annotated[str, Field(pattern=PROBE_ID_PATTERN)]
Minutes = Annotated[float, Field(ge=0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeSpec(_Spec):
    id: ProbeId
    measures: Literal["product", "air"] = "product"


class CompartmentSpec(_Spec):
    """One compartment: its product profile, probes and physics. The set-point defaults to
    the profile's (thermal.setpoint_for)."""

    name: str = Field(min_length=1, max_length=64)
    profile: str
    probes: list[ProbeSpec] = Field(min_length=1)
    setpoint_c: float | None = None
    insulation: Literal["normal", "reinforced"] = "normal"
    tau_product_min: float = Field(60.0, gt=0)
    load_c: float | None = None  # the product's temperature when loaded (default: set-point)
    precool_min: Minutes = 45.0  # the unit ran this long before loading (0: not pre-cooled)
    defrost_every_min: float | None = Field(None, gt=0)
    defrost_first_min: Minutes = 60.0
    defrost_min: Minutes = 12.0


class StopSpec(_Spec):
    name: str = Field(min_length=1)
    lat: float | None = None  # None: drawn inside the city's box
    lon: float | None = None
    dwell_min: Minutes | None = None  # None: drawn (routes.DWELL_MIN)
    door_min: Minutes = 3.0  # the body's door open for unloading, from a minute after arrival


FaultKind = Literal[
    "compressor_failure",  # the unit of `compartment` stops from at_min (for for_min)
    "door_left_open",  # at stop `stop` (1-based; else at at_min) the door stays open for_min
    "probe_disconnected",  # `probe` reads -127.0 (DS18B20 disconnected)
    "probe_stuck",  # `probe` repeats its last value
    "offline",  # no network: the box keeps readings in its outbox, sends the backlog after
    "reboot",  # power lost at at_min for off_min; back with its clock unset for unsynced_min
    "clock_skew",  # the box's clock is skew_s ahead (negative: behind) from at_min
    "duplicate",  # every `every`-th message is delivered twice (MQTT redelivery)
    "replay",  # at at_min, the messages sent in [from_min, to_min) again (a gateway's spool)
]


class FaultSpec(_Spec):
    kind: FaultKind
    at_min: Minutes = 0.0
    for_min: Minutes | None = None  # None: until the end
    compartment: str | None = None
    probe: ProbeId | None = None
    stop: int | None = Field(None, ge=1)
    skew_s: float = 0.0
    every: int = Field(0, ge=0)
    from_min: Minutes = 0.0
    to_min: Minutes = 0.0
    off_min: Minutes = 0.5
    unsynced_min: Minutes = 0.0

    @model_validator(mode="after")
    def _complete(self) -> FaultSpec:
        needs = {
            "compressor_failure": ("compartment",),
            "probe_disconnected": ("probe",),
            "probe_stuck": ("probe",),
            "duplicate": ("every",),
        }.get(self.kind, ())
        missing = [n for n in needs if not getattr(self, n)]
        if missing:
            raise ValueError(f"fault {self.kind} needs {', '.join(missing)}")
        return self


class VanSpec(_Spec):
    """A van: where and when it drives, its compartments, its round and its faults."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,23}$")
    city: Literal["paris", "lyon"]
    month: int = Field(ge=1, le=12)
    start_hour: float = Field(ge=0, lt=24)  # local time at t=0, for the outside temperature
    ambient_offset_c: float = 0.0
    compartments: list[CompartmentSpec] = Field(min_length=1, max_length=3)
    cabin_probe: ProbeId | None = None  # a probe in the cab, measuring no compartment
    probe_order: Literal["sorted", "shuffled"] = "sorted"
    loading_min: Minutes = 15.0
    loading_door_min: Minutes = 5.0  # the door open for loading, from t=0
    stops: list[StopSpec] = Field(min_length=1)
    tail_min: Minutes = 15.0  # readings go on this long after the last stop
    interval_s: float = Field(60.0, ge=1)
    batch_max: int = Field(50, ge=1, le=500)
    faults: list[FaultSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> VanSpec:
        names = [c.name for c in self.compartments]
        probes = [p.id for c in self.compartments for p in c.probes]
        if self.cabin_probe:
            probes.append(self.cabin_probe)
        if len(set(names)) != len(names) or len(set(probes)) != len(probes):
            raise ValueError("compartment names and probe ids must be unique in a van")
        for f in self.faults:
            if f.compartment is not None and f.compartment not in names:
                raise ValueError(f"fault {f.kind}: no compartment {f.compartment!r}")
            if f.probe is not None and f.probe not in probes:
                raise ValueError(f"fault {f.kind}: no probe {f.probe!r}")
            if f.stop is not None and f.stop > len(self.stops):
                raise ValueError(f"fault {f.kind}: no stop {f.stop}")
        return self


# -- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimReading:
    """A reading as taken (true time ``t_ms``) and as sent (``ts``: the box's clock)."""

    t_ms: int
    seq: int
    boot: int
    ts: int | None
    probes: dict[str, float | None]
    door: bool
    truth: dict[str, float]  # the temperature each probe's sensor was in (no fault, no noise)


@dataclass(frozen=True, slots=True)
class VanRun:
    spec: VanSpec
    device: str
    route: routes.Route
    duration_ms: int
    readings: list[SimReading]
    messages: list[Message]  # in sending order


Span = tuple[int, int]  # [start, end) ms


def _span(f: FaultSpec, end_ms: int) -> Span:
    a = round(f.at_min * MINUTE_MS)
    return a, end_ms if f.for_min is None else a + round(f.for_min * MINUTE_MS)


def _inside(spans: list[Span], t: int) -> bool:
    return any(a <= t < b for a, b in spans)


@dataclass
class _Schedule:
    """When what happens, in ms, worked out from the spec before the run."""

    doors: list[Span]
    failed: dict[str, list[Span]]
    defrosts: dict[str, list[Span]]
    offline: list[Span]
    power_off: list[Span]  # [lost, back)
    unsynced: list[Span]  # [back, clock set)
    skews: list[tuple[int, int]]  # (from, skew ms), sorted
    disconnected: dict[str, list[Span]]
    stuck: dict[str, list[Span]]

    def skew_at(self, t: int) -> int:
        skew = 0
        for a, s in self.skews:
            if a <= t:
                skew = s
        return skew

    def boundaries(self) -> list[int]:
        """Times where the physics' conditions change."""
        spans = [*self.doors, *(s for v in self.failed.values() for s in v)]
        spans += [s for v in self.defrosts.values() for s in v]
        return sorted({t for a, b in spans for t in (a, b)})


def _schedule(spec: VanSpec, route: routes.Route, end: int) -> _Schedule:
    stops = route.stops
    door_min = [s.door_min for s in spec.stops]
    left_open: dict[int, float | None] = {}
    extra_doors: list[Span] = []
    for f in spec.faults:
        if f.kind == "door_left_open":
            if f.stop is not None:
                left_open[f.stop - 1] = f.for_min
            else:
                extra_doors.append(_span(f, end))
    doors = [(0, round(spec.loading_door_min * MINUTE_MS))]
    for i, visit in enumerate(stops):
        a = round(visit.arrive_s * 1000) + DOOR_AFTER_ARRIVAL_S * 1000
        minutes = left_open[i] if i in left_open else door_min[i]
        b = end if minutes is None else a + round(minutes * MINUTE_MS)
        if b > a:
            doors.append((a, b))
    doors = _merged(doors + extra_doors)
    failed: dict[str, list[Span]] = {c.name: [] for c in spec.compartments}
    defrosts: dict[str, list[Span]] = {c.name: [] for c in spec.compartments}
    for c in spec.compartments:
        if c.defrost_every_min is not None:
            t = c.defrost_first_min
            while t * MINUTE_MS < end:
                a = round(t * MINUTE_MS)
                defrosts[c.name].append((a, a + round(c.defrost_min * MINUTE_MS)))
                t += c.defrost_every_min
    s = _Schedule(doors, failed, defrosts, [], [], [], [], {}, {})
    for f in spec.faults:
        span = _span(f, end)
        if f.kind == "compressor_failure" and f.compartment is not None:
            s.failed[f.compartment].append(span)
        elif f.kind == "offline":
            s.offline.append(span)
        elif f.kind == "reboot":
            back = span[0] + round(f.off_min * MINUTE_MS)
            s.power_off.append((span[0], back))
            s.unsynced.append((back, back + round(f.unsynced_min * MINUTE_MS)))
        elif f.kind == "clock_skew":
            s.skews.append((span[0], round(f.skew_s * 1000)))
        elif f.kind == "probe_disconnected" and f.probe is not None:
            s.disconnected.setdefault(f.probe, []).append(span)
        elif f.kind == "probe_stuck" and f.probe is not None:
            s.stuck.setdefault(f.probe, []).append(span)
    s.skews.sort()
    return s


def _merged(spans: list[Span]) -> list[Span]:
    """Overlapping door openings are one (a door left open is not opened again)."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _physics(spec: CompartmentSpec, profile: Profile) -> thermal.Compartment:
    setpoint, mode, band = thermal.setpoint_for(profile)
    return thermal.Compartment(
        spec.setpoint_c if spec.setpoint_c is not None else setpoint,
        mode,
        band,
        thermal.INSULATION_TAU_MIN[spec.insulation],
        spec.tau_product_min,
    )


def _quantized(celsius: float, rng: random.Random) -> float:
    """What a DS18B20 reads: the temperature with noise, in steps of 0.0625 C."""
    return round((celsius + rng.gauss(0, NOISE_C)) / DS18B20_STEP_C) * DS18B20_STEP_C


def route_of(spec: VanSpec, seed: int) -> routes.Route:
    """The van's round (also what the scenario's deliveries name as drop-offs)."""
    rng = random.Random(f"{seed}:{spec.id}:route")
    city = routes.CITIES[spec.city]
    stops = []
    for s in spec.stops:
        if s.lat is not None and s.lon is not None:
            place = routes.Place(s.name, s.lat, s.lon)
        else:
            place = routes.random_stop(city, rng, s.name)
        stops.append((place, s.dwell_min))
    return routes.plan(city, stops, spec.loading_min, rng)


def end_ms(spec: VanSpec, route: routes.Route) -> int:
    """When the van's readings stop: ``tail_min`` after it left its last stop."""
    return round((route.visits[-1].depart_s + spec.tail_min * 60) * 1000)


def simulate(
    spec: VanSpec, device: str, profiles: dict[str, Profile], epoch_ms: int, seed: int
) -> VanRun:
    """The van's round: every reading and every message, in order."""
    rng = random.Random(f"{seed}:{spec.id}")
    route = route_of(spec, seed)
    end = end_ms(spec, route)
    sched = _schedule(spec, route, end)
    comps = {c.name: _physics(c, profiles[c.profile]) for c in spec.compartments}

    def ambient(t: int) -> float:
        hour = (spec.start_hour + t / 3_600_000) % 24
        return thermal.ambient_c(spec.city, spec.month, hour, spec.ambient_offset_c)

    states: dict[str, thermal.State] = {}
    for c in spec.compartments:
        phys = comps[c.name]
        s = thermal.precooled(phys, ambient(0), c.precool_min)
        states[c.name] = replace(s, product_c=c.load_c if c.load_c is not None else s.air_c)

    boundaries = sched.boundaries()

    def advance(t0: int, t1: int) -> None:
        cuts = [t for t in boundaries if t0 < t < t1]
        for a, b in zip([t0, *cuts], [*cuts, t1], strict=True):
            for c in spec.compartments:
                x = thermal.Conditions(
                    ambient(a),
                    _inside(sched.doors, a),
                    not _inside(sched.failed[c.name], a),
                    _inside(sched.defrosts[c.name], a),
                )
                states[c.name] = thermal.step(comps[c.name], states[c.name], (b - a) / 1000, x)

    box = Firmware(device, epoch_ms, spec.batch_max)
    if spec.probe_order == "shuffled":
        box.shuffle = random.Random(f"{seed}:{spec.id}:order")
    door_times = sorted({t for a, b in sched.doors for t in (a, b)})
    interval = round(spec.interval_s * 1000)
    readings: list[SimReading] = []
    messages: list[Message] = []
    last_value: dict[str, float] = {}
    t_prev, t, fresh_boot = 0, 0, False
    while t <= end:
        advance(t_prev, t)
        t_prev = t
        truth: dict[str, float] = {}
        for c in spec.compartments:
            for p in c.probes:
                st = states[c.name]
                truth[p.id] = st.product_c if p.measures == "product" else st.air_c
        if spec.cabin_probe:
            truth[spec.cabin_probe] = 12.0 + 0.45 * ambient(t)  # the cab, air-conditioned
        probes: dict[str, float | None] = {}
        for pid, celsius in truth.items():
            value = _quantized(celsius, rng)
            if fresh_boot:
                value = DS18B20_POWER_ON  # read before its first conversion
            elif _inside(sched.disconnected.get(pid, []), t):
                value = DS18B20_DISCONNECTED
            elif _inside(sched.stuck.get(pid, []), t) and pid in last_value:
                value = last_value[pid]
            else:
                last_value[pid] = value
            probes[pid] = value
        fresh_boot = False
        unsynced = _inside(sched.unsynced, t)
        if not unsynced:  # set by the GPS (or NTP), to a clock that may be skewed
            box.set_clock(sched.skew_at(t))
        fix = route.at(t / 1000)
        online = not _inside(sched.offline, t)
        gps = None
        if not unsynced:  # no fix yet is why the clock is not set
            gps = (
                fix.lat + rng.gauss(0, 2e-5),
                fix.lon + rng.gauss(0, 2e-5),
                max(0.0, fix.speed_kmh + (rng.gauss(0, 2.0) if fix.speed_kmh else 0.0)),
                round(rng.uniform(0.7, 1.8), 1),
            )
        door = _inside(sched.doors, t)
        battery = (13.9 if fix.speed_kmh else 12.7) + rng.gauss(0, 0.02)
        rssi = rng.randint(-95, -60) if online else None
        sent = box.take(t, probes, door, battery, gps, rssi)
        readings.append(SimReading(t, sent["seq"], box.boot, sent["ts"], probes, door, truth))
        if online:
            messages += box.forward(t)
        # the next reading: an interval on, sooner if the door opens or closes
        nxt = t + interval
        moved = [d for d in door_times if t < d < nxt]
        if moved:
            nxt = moved[0]
        for lost, back in sched.power_off:
            if lost <= nxt < back or (t < lost and nxt >= back):
                nxt = back + BOOT_MS
                advance(t_prev, back)
                t_prev = back
                box.power_on(back)
                fresh_boot = True
                break
        for _, b in sched.offline:
            if t < b <= nxt and box.outbox:  # back online before the next reading
                messages += [replace(m, kind="backlog") for m in box.forward(b)]
        t = nxt
    return VanRun(spec, device, route, end, readings, _redelivered(spec, messages))


def _redelivered(spec: VanSpec, messages: list[Message]) -> list[Message]:
    """The messages as the broker gets them: with the duplicates and replays of the faults."""
    out = list(messages)
    for f in spec.faults:
        if f.kind == "duplicate":
            doubled: list[Message] = []
            for i, m in enumerate(out):
                doubled.append(m)
                if i % f.every == f.every - 1:
                    doubled.append(replace(m, kind="duplicate"))
            out = doubled
        elif f.kind == "replay":
            a, b = round(f.from_min * MINUTE_MS), round(f.to_min * MINUTE_MS)
            at = round(f.at_min * MINUTE_MS)
            again = [replace(m, at_ms=at, kind="replay") for m in messages if a <= m.at_ms < b]
            out += again
    out.sort(key=lambda m: m.at_ms)  # stable: the order within one instant is kept
    return out
