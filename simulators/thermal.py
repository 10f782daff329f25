"""The thermal model of a refrigerated (or heated) compartment, and the weather around it.

Pure and deterministic: no clock, no randomness (sensor noise is the van model's).

Each compartment has two temperatures, integrated with explicit Euler steps of at most
``STEP_S`` seconds (time constants are minutes, so the error is far below a probe's 0.0625 C):

- the **air** exchanges heat with the outside through the walls (time constant ``tau_wall``,
  from the body's insulation class), with the outside much faster while the door is open
  (``tau_door``), and is pulled towards the unit's supply temperature while the unit runs
  (``tau_unit``); a defrost stops the unit and heats the coil (the air goes towards
  ``DEFROST_AIR_C``);
- the **product** follows the air with its thermal mass (``tau_product``).

The unit is a thermostat: it switches on when the air leaves the set-point by more than the
band and off when it has come back past the other side (cooling, or heating for a hot-meals
box), so the air cycles around the set-point as it does in a real van.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final, Literal

from coldtrace.profiles import Profile

STEP_S: Final = 10.0
# ATP agreement (UN, 1970), annex 1: normally insulated bodies (IN) have K <= 0.70 W/(m2 K),
# reinforced ones (IR) K <= 0.40. For a 20 m3 van body that gives the air's time constant
# towards the outside with the unit off (about an hour for IN, two for IR).
INSULATION_TAU_MIN: Final = {"normal": 60.0, "reinforced": 110.0}
DOOR_TAU_MIN: Final = 5.0  # the air of an open body is replaced in minutes
UNIT_TAU_MIN: Final = 4.0  # a running unit pulls the air to its supply temperature
UNIT_OFFSET_C: Final = 8.0  # supply air this far beyond the set-point
DEFROST_AIR_C: Final = 7.0  # the coil heater warms the air at the probes towards this
DEFROST_TAU_MIN: Final = 10.0

Mode = Literal["cool", "heat"]

# Mean daily temperature (C) per month and half the mean daily range, Meteo-France normals
# 1991-2020 (Paris-Montsouris, Lyon-Bron), rounded.
CLIMATE: Final[dict[str, tuple[tuple[float, ...], tuple[float, ...]]]] = {
    "paris": (
        (5.4, 6.2, 9.4, 12.2, 15.9, 19.1, 21.3, 21.1, 17.6, 13.6, 8.9, 5.9),
        (2.8, 3.4, 4.3, 5.0, 5.2, 5.4, 5.6, 5.5, 5.0, 4.1, 3.1, 2.6),
    ),
    "lyon": (
        (3.9, 5.3, 9.2, 12.4, 16.4, 20.3, 22.7, 22.3, 18.2, 13.9, 8.3, 4.7),
        (3.4, 4.4, 5.5, 6.1, 6.2, 6.5, 6.8, 6.6, 6.0, 5.0, 3.8, 3.1),
    ),
}
WARMEST_HOUR: Final = 15.0  # local solar time of the daily maximum


def ambient_c(city: str, month: int, hour: float, offset_c: float = 0.0) -> float:
    """Outside air temperature (C) in ``city`` for ``month`` (1-12) at local ``hour`` (0-24,
    fractional): the month's mean plus a daily cosine peaking at 15:00; ``offset_c`` shifts it
    (a heatwave, a sunny street)."""
    means, halves = CLIMATE[city]
    daily = math.cos(2 * math.pi * (hour - WARMEST_HOUR) / 24)
    return means[month - 1] + halves[month - 1] * daily + offset_c


def setpoint_for(profile: Profile) -> tuple[float, Mode, float]:
    """(set-point C, mode, thermostat half-band C) a fleet sets for a profile: the middle of a
    two-sided range; 3 C inside a one-sided limit (-21 C for deep-frozen, +66 C for hot meals
    as 63 + 3)."""
    if profile.low_c is not None and profile.high_c is not None:
        width = profile.high_c - profile.low_c
        return (profile.low_c + profile.high_c) / 2, "cool", min(1.0, width / 4)
    if profile.high_c is not None:
        return profile.high_c - 3.0, "cool", 1.0
    assert profile.low_c is not None  # a profile has at least one limit
    return profile.low_c + 3.0, "heat", 1.0


@dataclass(frozen=True, slots=True)
class Compartment:
    """The physics of one compartment (temperatures C, time constants min)."""

    setpoint_c: float
    mode: Mode = "cool"
    band_c: float = 1.0
    tau_wall_min: float = INSULATION_TAU_MIN["normal"]
    tau_product_min: float = 60.0


@dataclass(frozen=True, slots=True)
class State:
    air_c: float
    product_c: float
    unit_on: bool = False


@dataclass(frozen=True, slots=True)
class Conditions:
    """What acts on the compartment during a step."""

    ambient_c: float
    door_open: bool = False
    unit_works: bool = True  # False: compressor (or heater) failed
    defrost: bool = False


def step(c: Compartment, s: State, dt_s: float, x: Conditions) -> State:
    """The state ``dt_s`` seconds later (any length: split into STEP_S steps)."""
    n = max(1, math.ceil(dt_s / STEP_S))
    h = dt_s / n / 60.0  # minutes per sub-step
    sign = 1.0 if c.mode == "cool" else -1.0  # cooling pulls down, heating up
    air, product, on = s.air_c, s.product_c, s.unit_on
    for _ in range(n):
        deviation = sign * (air - c.setpoint_c)  # > 0: on the wrong side of the set-point
        if deviation > c.band_c:
            on = True
        elif deviation < -c.band_c:
            on = False
        running = on and x.unit_works and not x.defrost
        d_air = (x.ambient_c - air) / c.tau_wall_min
        if x.door_open:
            d_air += (x.ambient_c - air) / DOOR_TAU_MIN
        if running:
            d_air += (c.setpoint_c - sign * UNIT_OFFSET_C - air) / UNIT_TAU_MIN
        if x.defrost:
            d_air += (DEFROST_AIR_C - air) / DEFROST_TAU_MIN
        d_product = (air - product) / c.tau_product_min
        air += d_air * h
        product += d_product * h
    return State(air, product, on)


def precooled(c: Compartment, ambient: float, minutes: float) -> State:
    """The empty compartment after its unit ran ``minutes`` from the outside temperature
    (pre-cooling, or pre-heating a hot box); the product probe is then in the air."""
    s = step(c, State(ambient, ambient, True), minutes * 60, Conditions(ambient))
    return replace(s, product_c=s.air_c)
