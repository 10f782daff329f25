"""Request and response models of the API (the OpenAPI at /docs is generated from them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, overload

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from coldtrace.contract import DEVICE_ID_PATTERN
from coldtrace.deliveries.lifecycle import Action, State
from coldtrace.settings import known_timezone

SLUG = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
T = TypeVar("T")


# What every store can hold. Row ids: INTEGER columns, 32-bit signed in PostgreSQL. Offsets
# (LIMIT/OFFSET): signed 64-bit in SQLite and PostgreSQL. Times: epoch ms in BIGINT, and
# InfluxDB's signed 64-bit ns since 1970 (1677..2262), with room for the queries' windows and
# margins (a window over 292 years overflows an InfluxQL duration); records begin in 1970.
MAX_ID = 2**31 - 1
MAX_OFFSET = 2**63 - 1
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _storable(dt: datetime) -> datetime:
    """Naive means UTC; refused (422) outside EARLIEST..LATEST."""
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    if not EARLIEST <= aware < LATEST:
        raise ValueError(f"must be from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d} (UTC)")
    return aware


# A time the stores can hold: with a time zone (request bodies) or naive as UTC (queries).
Instant = Annotated[AwareDatetime, AfterValidator(_storable)]
QueryInstant = Annotated[datetime, AfterValidator(_storable)]


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@overload
def from_ms(ms: int) -> datetime: ...
@overload
def from_ms(ms: int | None) -> datetime | None: ...
def from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


# An e-mail address as SMTP takes it (local@domain, no spaces, no display name).
EmailAddress = Annotated[
    str, Field(pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$", max_length=254)
]
ContactEmails = Annotated[
    list[EmailAddress],
    Field(max_length=20, description="where its certificates are e-mailed, every version once"),
]


def _timezone(name: str | None) -> str | None:
    if name is not None and not known_timezone(name):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Paris)")
    return name


TimeZone = Annotated[
    str | None,
    Field(None, max_length=64, examples=["Europe/Paris"]),
    AfterValidator(_timezone),
]
Language = Literal["en", "fr"]


class CustomerIn(BaseModel):
    id: str = Field(pattern=SLUG, examples=["lyon-hospital-lab"])
    name: str = Field(min_length=1, max_length=200)
    contact_emails: ContactEmails = []
    language: Language | None = Field(
        None, description="its certificates' language (null: COLDTRACE_CERTIFICATE_LANGUAGE)"
    )
    timezone: TimeZone = Field(
        None, description="its certificates' time zone (null: COLDTRACE_CERTIFICATE_TIMEZONE)"
    )


class CustomerContactsIn(BaseModel):
    contact_emails: ContactEmails


class CustomerOut(Out):
    id: str
    name: str
    created: datetime
    contact_emails: list[str]
    language: Language | None
    timezone: str | None


class CompartmentIn(BaseModel):
    name: str = Field(pattern=SLUG, examples=["chiller"])
    profile: str | None = Field(None, description="default product profile (alerts' profile id)")


class VehicleIn(BaseModel):
    id: str = Field(pattern=DEVICE_ID_PATTERN, examples=["van-01"])
    name: str = Field(min_length=1, max_length=200)
    compartments: list[CompartmentIn] = Field(min_length=1)


class CompartmentOut(Out):
    name: str
    profile: str | None


class VehicleOut(Out):
    id: str
    name: str
    created: datetime
    compartments: list[CompartmentOut]


class DeviceIn(BaseModel):
    id: str = Field(pattern=DEVICE_ID_PATTERN, description="its MQTT username")
    label: str | None = Field(None, max_length=200)
    carries: (
        Annotated[
            list[Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]],
            Field(min_length=1, max_length=64),
        ]
        | None
    ) = Field(
        None,
        description="a gateway's account: the registered boxes it publishes for",
        examples=[["box-01", "box-02"]],
    )


class DeviceOut(Out):
    id: str
    label: str | None
    created: datetime
    disabled: datetime | None = Field(description="since when its broker login is refused")
    carries: list[str] | None = Field(description="a gateway's boxes; null for a device")


class DeviceCreated(DeviceOut):
    password: str = Field(description="its broker password, shown this once (the broker: a hash)")


class DeviceCredential(BaseModel):
    device: str
    password: str = Field(description="its new broker password, shown this once")


class AssignmentIn(BaseModel):
    probe: str = Field(min_length=1, max_length=64, examples=["product"])
    vehicle_id: str
    compartment: str
    valid_from: Instant | None = Field(None, description="now when not given")


class CalibrationIn(BaseModel):
    probe: str = Field(min_length=1, max_length=64, examples=["product"])
    calibrated: Instant
    due: Instant = Field(description="the calibration holds until then")
    reference: str = Field(min_length=1, max_length=200, description="its certificate")


class CalibrationOut(Out):
    id: int
    device_id: str
    probe: str
    calibrated: datetime
    due: datetime
    reference: str


class AssignmentOut(Out):
    id: int
    device_id: str
    probe: str
    vehicle_id: str
    compartment: str
    valid_from: datetime
    valid_to: datetime | None


class Place(BaseModel):
    address: str = Field(min_length=1, max_length=300)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class DeliveryIn(BaseModel):
    reference: str | None = Field(None, max_length=100, description="the ordering system's id")
    customer_id: str
    profile: str | None = Field(None, description="defaults to the compartment's profile")
    vehicle_id: str
    compartment: str
    pickup: Place
    dropoff: Place
    planned_start: Instant
    planned_end: Instant


class CertificateSummary(BaseModel):
    """A delivery's current certificate version in brief (the whole: its certificates)."""

    id: int
    version: int
    verdict: str
    disagreements: int = Field(
        description="breaches found by only one of the evaluation of the stored readings and "
        "the live rules stage (listed in the body; docs/certificates.md)"
    )


class DeliveryOut(BaseModel):
    id: int
    reference: str | None
    customer_id: str
    profile: str
    vehicle_id: str
    compartment: str
    pickup: Place
    dropoff: Place
    planned_start: datetime
    planned_end: datetime
    state: State
    started: datetime | None
    start_source: str | None
    delivered: datetime | None
    end_source: str | None
    closed: datetime | None
    cancelled: datetime | None
    created: datetime
    certificate: CertificateSummary | None = Field(
        None, description="its current certificate (only in GET /deliveries/{id})"
    )
    dashboard_url: str | None = Field(
        None,
        description="its Delivery dashboard in Grafana: vehicle, compartment, the probes that "
        "measured it, the profile's limits, its window (when COLDTRACE_GRAFANA_URL is set)",
    )


class TransitionIn(BaseModel):
    action: Action
    at: Instant | None = Field(None, description="when it happened; now when not given")
    source: Literal["api", "driver"] = "api"


class BreachOut(BaseModel):
    """A breach; an open one's figures (peak, degree-minutes, duration) run up to ``through``,
    the newest reading judged."""

    id: int
    delivery_id: int | None = Field(description="the delivery it belongs to (None: none)")
    device: str
    probe: str
    rule: str
    profile: str
    severity: str
    state: str
    start: datetime
    end: datetime | None
    through: datetime | None = Field(
        description="device time of the newest reading its figures include (None: not kept)"
    )
    duration_min: float | None = Field(
        description="minutes from start to end, or to `through` while open (None: unknown)"
    )
    peak: float | None
    degree_minutes: float
    limit_c: float | None
    suppressed: bool
    detected_late: bool


class CertificateOut(BaseModel):
    """A certificate version. `signature` is Ed25519 over the canonical form of `body` (JSON,
    keys sorted at every depth, no whitespace, UTF-8; see README "Verifying a certificate"),
    with the key named by `key_id` (GET /api/v1/certificates/public-key). Versions issued
    before certificates were signed have neither."""

    id: int
    delivery_id: int
    version: int
    issued: datetime
    superseded: datetime | None
    verdict: str
    body: dict[str, Any]
    algorithm: Literal["Ed25519"] = "Ed25519"
    signature: str | None = Field(description="base64 of the 64-byte Ed25519 signature")
    key_id: str | None = Field(description="first 16 hex digits of SHA-256(raw public key)")


class VerificationOut(BaseModel):
    """Whether one certificate verifies (POST /api/v1/certificates/verify)."""

    certificate: int | None = Field(description="its id, as the input gives it")
    delivery: int | None = Field(description="the signed body's delivery_id")
    version: int | None = Field(description="the signed body's version")
    valid: bool
    why: str = Field(description="why not, one reason; empty when valid")


class PublicKeyOut(BaseModel):
    """The key certificates are verified with (offline: nothing else is needed)."""

    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str
    pem: str = Field(description="SubjectPublicKeyInfo PEM")


class LivePosition(BaseModel):
    at: datetime
    lat: float
    lon: float
    speed_kmh: float | None


class FleetVehicle(BaseModel):
    vehicle_id: str
    name: str
    devices: list[str]
    last_reading: datetime | None
    position: LivePosition | None
    temperatures: dict[str, float]
    open_breaches: int
    active_delivery_id: int | None
    # "device/probe" of its devices' probes the rules stage stopped judging after an error
    # (ingest's /health; empty when the API is not told where ingest is)
    unjudged_probes: list[str] = []


class AuditOut(Out):
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class Health(BaseModel):
    status: Literal["ok", "failing"]
    database: bool
    influx: bool
    # ingest's own state (None: COLDTRACE_INGEST_HEALTH_URL unset, not asked)
    ingest: Literal["ok", "failing", "unreachable"] | None = None
    reasons: list[str] = []  # one line per failing part, e.g. a probe the rules don't judge


class GeoJson(BaseModel):
    """RFC 7946 FeatureCollection: the route (LineString), stops and breaches (Points)."""

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]]


class Series(BaseModel):
    """Column arrays for charts: epoch ms `t` with `c` (Celsius) per probe, and the route."""

    delivery_id: int
    start: int
    end: int
    downsampled: bool
    temperature: dict[str, dict[str, list[float]]]
    position: dict[str, list[float | None]]
