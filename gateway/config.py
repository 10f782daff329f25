"""The gateway's configuration file (TOML): its broker account, its spool, its serial ports.

One file per in-cab computer, e.g. ``/etc/coldtrace/gateway.toml`` (an example with every
field: ``deploy/gateway/gateway.toml``). Read once at start; a mistake is a ``ConfigError``
whose message names the field.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coldtrace.contract import DEVICE_ID_PATTERN, PROBE_ID_PATTERN

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
ProbeId = Annotated[str, Field(pattern=PROBE_ID_PATTERN)]


class ConfigError(Exception):
    """The configuration file cannot be used; the message says which field and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Broker(_Strict):
    """Where the gateway publishes, with its own account (``coldtrace devices add GW
    --gateway --carries ...``); the password is read from ``password_file`` (one line)."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    password_file: Path
    # A CA file turns TLS on (the broker's TLS listener, docs/security.md).
    tls_ca: Path | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)


class Port(_Strict):
    """One serial port and what is wired to it.

    kind "box": a sensor box in tethered mode (wire-contract batches as JSON lines); it may
    forward only the boxes named in ``carries``. kind "gnss": an NMEA 0183 receiver. kind
    "logger": a legacy line logger or reefer controller printing CSV lines; its readings get
    ``device``, a boot and seqs from the gateway, probe values from the ``probes`` columns
    (0-based), converted from ``unit`` to degrees C.
    """

    name: str = Field(min_length=1, max_length=64)
    # Use /dev/serial/by-id/... : the name stays when the adapter is replugged.
    path: str = Field(min_length=1)
    kind: Literal["box", "gnss", "logger"]
    baud: int = Field(115200, ge=50, le=4_000_000)
    # Bytes without a line end after which the line is discarded as garbage (a 500-reading
    # batch is about 100 KB; an NMEA sentence at most 82 characters).
    max_line: int = Field(0, ge=0, le=4 * 1024 * 1024)
    carries: list[DeviceId] = Field(default_factory=list)
    device: DeviceId | None = None
    delimiter: str = Field(",", min_length=1, max_length=1)
    probes: dict[ProbeId, int] = Field(default_factory=dict)
    unit: Literal["C", "F"] = "C"
    # The logger's own time, if it prints one: its column, strptime format and zone (local
    # wall time in an ambiguous hour after a DST change is taken as the first one). Without
    # it, a reading's time is the gateway's (GNSS, else the trusted system clock, else null).
    time_column: int | None = Field(None, ge=0)
    time_format: str = "%Y-%m-%d %H:%M:%S"
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _complete(self) -> Port:
        if self.kind == "box" and not self.carries:
            raise ValueError(f"port {self.name}: a box port needs `carries` (its device ids)")
        if self.kind == "logger" and (self.device is None or not self.probes):
            raise ValueError(f"port {self.name}: a logger port needs `device` and `probes`")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"port {self.name}: unknown timezone {self.timezone!r}") from e
        return self

    @property
    def line_limit(self) -> int:
        """``max_line``, or the kind's default (bytes)."""
        default = {"box": 256 * 1024, "gnss": 128, "logger": 1024}[self.kind]
        return self.max_line or default


class GatewayConfig(_Strict):
    """The whole file. ``gateway`` is the gateway's broker username and the name its status
    is published under."""

    gateway: DeviceId
    spool: Path
    # Readings the spool keeps at most; beyond, the oldest go and are reported as dropped
    # (about 300 bytes each on disk: 200,000 is 60 MB, days of a van's readings).
    spool_max_readings: int = Field(200_000, ge=10)
    batch_max: int = Field(200, ge=1, le=500)
    # Unacknowledged readings are sent again after this long without the ack moving (s).
    resend_after_s: float = Field(30.0, gt=0)
    status_interval_s: float = Field(30.0, gt=0)
    # Trust the computer's clock (kept by NTP over the modem) for readings when the GNSS
    # receiver has not given a time; false: such readings keep `ts` null for ingest to place.
    system_clock: bool = False
    broker: Broker
    ports: list[Port] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        names = [p.name for p in self.ports]
        if len(set(names)) != len(names):
            raise ValueError("port names must be unique")
        if sum(p.kind == "gnss" for p in self.ports) > 1:
            raise ValueError("at most one gnss port")
        devices = self.devices()
        if len(set(devices)) != len(devices):
            raise ValueError("a device is carried by two ports")
        return self

    def devices(self) -> list[str]:
        """Every device id the gateway publishes for: the boxes it carries and its loggers."""
        out: list[str] = []
        for p in self.ports:
            out += p.carries
            if p.device is not None:
                out.append(p.device)
        return out


def load(path: Path) -> GatewayConfig:
    """The configuration in ``path``; ConfigError with a one-line reason otherwise."""
    try:
        data = tomllib.loads(path.read_text())
        return GatewayConfig.model_validate(data)
    except OSError as e:
        raise ConfigError(f"cannot read the gateway config {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(file)"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from e
