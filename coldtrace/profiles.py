"""Product profiles: data (``coldtrace/profiles.toml``, versioned), extendable by a user file.

A user file has the same format; its profiles are added to the shipped ones, and a profile
with a shipped id replaces it. Pure: reads files, nothing else.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SHIPPED: Final = Path(__file__).with_name("profiles.toml")
FORMAT_VERSION: Final = 1

Minutes = Annotated[float, Field(ge=0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cumulative(_Frozen):
    above_c: float | None = None
    below_c: float | None = None
    budget_min: Minutes
    window_h: float = Field(gt=0)


class MktLimit(_Frozen):
    limit_c: float
    window_h: float = Field(gt=0)


class Profile(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    name: str
    low_c: float | None = None
    high_c: float | None = None
    delay_min: Minutes = 15
    hysteresis_c: float = Field(0.2, ge=0)
    critical_low_c: float | None = None
    critical_high_c: float | None = None
    critical_after_min: Minutes | None = None
    cumulative: Cumulative | None = None
    mkt: MktLimit | None = None
    fault_delay_min: Minutes = 10
    stuck_min: Minutes = 240
    max_rate_c_per_min: float | None = Field(5.0, gt=0)
    door_open_max_min: Minutes | None = None
    loading_grace_min: Minutes | None = None
    # Where the limits come from, as a certificate states it (docs/certificates.md).
    regulation: str | None = Field(None, max_length=300)
    # The regulation asks for calibrated instruments: a probe whose calibration is expired
    # or missing on a delivery makes its certificate incomplete.
    calibration_required: bool = False

    @model_validator(mode="after")
    def _has_a_limit(self) -> Profile:
        if self.low_c is None and self.high_c is None:
            raise ValueError("needs low_c or high_c")
        if self.low_c is not None and self.high_c is not None and self.low_c >= self.high_c:
            raise ValueError("low_c must be below high_c")
        return self

    def in_range(self, celsius: float) -> bool:
        return (self.low_c is None or celsius >= self.low_c) and (
            self.high_c is None or celsius <= self.high_c
        )


class ProfileError(Exception):
    """A profiles file that cannot be used; the message names the file and the field."""


def _read(path: Path) -> dict[str, Profile]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from None
    if data.get("version") != FORMAT_VERSION:
        raise ProfileError(f"{path}: needs `version = {FORMAT_VERSION}` at the top")
    profiles: dict[str, Profile] = {}
    for pid, fields in data.get("profiles", {}).items():
        try:
            profiles[pid] = Profile(id=pid, **fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "profile"
            raise ProfileError(f"{path}: profile {pid!r}, {where}: {err['msg']}") from None
    return profiles


def load_profiles(user_file: Path | None = None) -> dict[str, Profile]:
    """The shipped profiles, plus (or replaced by) those of ``user_file``."""
    profiles = _read(SHIPPED)
    if user_file is not None:
        profiles.update(_read(user_file))
    return profiles


def get_profile(profiles: dict[str, Profile], pid: str) -> Profile:
    try:
        return profiles[pid]
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise ProfileError(f"unknown profile {pid!r}; known profiles: {known}") from None
