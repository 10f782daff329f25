"""Wire contract v1: what a device publishes and how ingest reads it.

Shared by the simulators, the gateway and ingest (the MicroPython firmware writes the same
shape by hand; ``schemas/telemetry-v1.json`` is generated from these models). Pure: no I/O.
"""

from __future__ import annotations

import math
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONTRACT_VERSION: Final = "v1"
TOPIC_ROOT: Final = f"coldtrace/{CONTRACT_VERSION}"
TELEMETRY_SUBSCRIPTION: Final = f"{TOPIC_ROOT}/+/telemetry"
MAX_READINGS_PER_BATCH: Final = 500
# The largest batch a device may publish, in bytes of JSON: the largest contract-valid batch
# (500 readings of 16 probes, the longest ids and values, GPS and every optional field, 64
# dropped ranges) is under 600 KB even with a space after every separator (a unit test
# builds it), so a contract-valid batch always fits. Ingest accepts this much (the default of
# COLDTRACE_INGEST_MAX_PAYLOAD_BYTES) and the broker's max_packet_size (2 MiB) lies above it,
# so anything between the two is dead-lettered as oversize, its readings counted, instead of
# disconnecting the device.
MAX_BATCH_BYTES: Final = 1024 * 1024
MAX_SEQ: Final = 2**63 - 1  # a seq is an InfluxDB integer field: int64

DEVICE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PROBE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"

# Physically possible food-probe range; anything outside is a probe fault, not a temperature.
PLAUSIBLE_CELSIUS: Final = (-80.0, 100.0)
# A DS18B20 reads exactly -127 when disconnected and +85 at power-on before a conversion.
DS18B20_DISCONNECTED: Final = -127.0
DS18B20_POWER_ON: Final = 85.0

# Device clocks before 2020 or after 2100 are unsynced garbage, not times.
MIN_TS_MS: Final = 1_577_836_800_000
MAX_TS_MS: Final = 4_102_444_800_000

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
ProbeId = Annotated[str, Field(pattern=PROBE_ID_PATTERN)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
# A probe's value may be NaN or infinite (a failed conversion): stored as that probe's fault.
ProbeValue = Annotated[float, Field(allow_inf_nan=True)]


def telemetry_topic(device: str) -> str:
    return f"{TOPIC_ROOT}/{device}/telemetry"


def status_topic(device: str) -> str:
    return f"{TOPIC_ROOT}/{device}/status"


def config_topic(device: str) -> str:
    return f"{TOPIC_ROOT}/{device}/config"


def ack_topic(device: str) -> str:
    """Where ingest tells a device what it has stored (contract v1.1, docs/wire-format.md)."""
    return f"{TOPIC_ROOT}/{device}/ack"


def device_from_topic(topic: str) -> str | None:
    """The device id in ``coldtrace/v1/<device>/telemetry``, or None for any other topic."""
    parts = topic.split("/")
    if (
        len(parts) == 4
        and f"{parts[0]}/{parts[1]}" == TOPIC_ROOT
        and parts[3] == "telemetry"
        and parts[2]
    ):
        return parts[2]
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class GpsFix(_Strict):
    lat: FiniteFloat = Field(ge=-90, le=90)
    lon: FiniteFloat = Field(ge=-180, le=180)
    speed_kmh: FiniteFloat | None = Field(default=None, ge=0, le=400)
    hdop: FiniteFloat | None = Field(default=None, ge=0, le=100)


class Reading(_Strict):
    seq: int = Field(ge=0, lt=2**63)
    ts: int | None = Field(ge=MIN_TS_MS, le=MAX_TS_MS, description="UTC epoch ms, null if unsynced")
    up: int = Field(ge=0, lt=2**63, description="ms since boot")
    probes: dict[ProbeId, ProbeValue | None] = Field(max_length=16)
    gps: GpsFix | None = None
    door: bool | None = None
    battery_v: FiniteFloat | None = Field(default=None, ge=0, le=60)
    rssi_dbm: int | None = Field(default=None, ge=-150, le=0)


class DroppedRange(_Strict):
    """Seqs the device itself discarded (outbox full): a gap it reports, not a loss to hunt."""

    first: int = Field(ge=0, lt=2**63, alias="from")
    last: int = Field(ge=0, lt=2**63, alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> DroppedRange:
        if self.last < self.first:
            raise ValueError("'to' must not be below 'from'")
        return self


class TelemetryBatch(_Strict):
    device: DeviceId
    boot: int = Field(ge=0, lt=2**63)
    readings: list[Reading] = Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)
    dropped: list[DroppedRange] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _seq_strictly_increasing(self) -> TelemetryBatch:
        prev = -1
        for r in self.readings:
            if r.seq <= prev:
                raise ValueError(
                    f"readings[].seq must strictly increase (seq {r.seq} after {prev})"
                )
            prev = r.seq
        return self


class Ack(_Strict):
    """Contract v1.1, ingest -> device, retained on ``ack_topic(device)``: every seq from
    ``first`` to ``seq`` (inclusive) is stored, held, dead-lettered or reported dropped, so the
    device may delete those readings from its outbox. ``first`` is the lowest seq ingest has
    of the device: a device still holding a lower one keeps it and sends it again. ``high`` is
    the highest seq ingest has: above ``seq``, ingest misses seqs after ``seq`` that it should
    have got before ``high`` (docs/wire-format.md: when a device sends them again). Ingest
    always sends it; a reader takes an ack without it (as first landed) as ``high == seq``."""

    first: int = Field(ge=0, lt=2**63, alias="from")
    seq: int = Field(ge=0, lt=2**63)
    high: int | None = Field(default=None, ge=0, lt=2**63)

    def payload(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


def probe_fault(value: float | None) -> str | None:
    """Why a probe value is not a temperature, or None when it is one."""
    if value is None:
        return "no_value"
    if value == DS18B20_DISCONNECTED:
        return "disconnected"
    if value == DS18B20_POWER_ON:
        return "power_on_value"
    if math.isnan(value):
        return "not_a_number"
    if not PLAUSIBLE_CELSIUS[0] <= value <= PLAUSIBLE_CELSIUS[1]:
        return "out_of_range"
    return None


def json_schema() -> dict[str, object]:
    schema = TelemetryBatch.model_json_schema(by_alias=True)
    schema["$id"] = "https://coldtrace.invalid/schemas/telemetry-v1.json"
    schema["title"] = "coldtrace telemetry batch, wire contract v1"
    return schema
