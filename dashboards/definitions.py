"""The quality managers' dashboards and alert rules: the one source of truth that
``python -m dashboards`` renders into dashboards/grafana/ (docs/storage-schema.md: what each
measurement holds). Pure.

InfluxDB keeps devices and probes, not vehicles: a delivery's vehicle and compartment reach
the Delivery dashboard through its link (coldtrace.dashboards.links), with the devices and
probes that measured that compartment and the profile's limits."""

from __future__ import annotations

from dashboards.grafana import (
    JSON,
    alert_rule,
    annotation,
    dashboard,
    override,
    panel,
    query_variable,
    target,
    text_variable,
)

FLEET_UID = "coldtrace-fleet"
DELIVERY_UID = "coldtrace-delivery"
COMPLIANCE_UID = "coldtrace-compliance"
DEVICES_UID = "coldtrace-devices"
RULE_GROUP = "coldtrace"

OK_RED = [(None, "green"), (1, "red")]

# The rules' windows (seconds): an open breach is seen while its last transition is within
# the late-readings horizon (COLDTRACE_ALERTS_LATE_HORIZON_H, 48 h).
BREACH_WINDOW_S = 48 * 3600
REJECTS_WINDOW_S = 15 * 60
REJECTS_THRESHOLD = 10
LAG_WINDOW_S = 5 * 60
LAG_THRESHOLD_MS = 60_000

# The last transition of each breach series (device, probe, rule) says whether it is open:
# a later breach of the same probe and rule replaces an earlier one (ids are not tags). Each
# field is the last of the points that have it: state and severity those of the transitions,
# the figures (peak, degree-minutes, duration so far) those of the latest point, which for an
# open breach is its ``updated`` one, kept current batch by batch (docs/storage-schema.md).
LAST_BREACH = (
    'SELECT last("state") AS "state", last("severity") AS "severity", last("peak") AS "peak", '
    'last("degree_minutes") AS "degree_minutes", last("duration_min") AS "duration_min", '
    'last("limit_c") AS "limit_c", last("start") AS "start" FROM "breach" '
    'WHERE {where}$timeFilter GROUP BY "device", "probe", "rule"'
)
# The Delivery dashboard lists transitions; an open breach's figures updated are no news there.
TRANSITIONS = """"transition" != 'updated'"""


def open_breaches(
    where: str = "",
    columns: str = '"severity", "peak", "degree_minutes", "duration_min", "limit_c", "start"',
) -> str:
    """Open breaches, one row per device, probe and rule (table)."""
    return (
        f"SELECT {columns} FROM ({LAST_BREACH.format(where=where)}) "
        """WHERE "state" = 'open' GROUP BY "device", "probe", "rule\""""
    )


def count_open(where: str, severity: str = "") -> str:
    """How many breaches are open, per device (one series per device)."""
    sev = f""" AND "severity" = '{severity}'""" if severity else ""
    return (
        f'SELECT count("state") AS "open" FROM ({LAST_BREACH.format(where=where)}) '
        f"""WHERE "state" = 'open'{sev} GROUP BY "device\""""
    )


SILENT = """"rule" = 'device_silent' AND """
DEVICE = '"device" =~ /^$device$/'
PROBE = '"probe" =~ /^$probe$/'


def fleet_now() -> JSON:
    """Where each vehicle is and what is wrong now."""
    positions = (
        'SELECT last("lat") AS "lat", last("lon") AS "lon", last("speed_kmh") AS "speed_kmh" '
        'FROM "position" WHERE $timeFilter GROUP BY "device"'
    )
    geomap = panel(
        "geomap",
        "Vehicles: last position, red with an open breach",
        [
            target("A", positions, "table"),
            target("B", count_open(""), "table"),
        ],
        (0, 0, 14, 12),
        description="Last GPS fix of each device; coloured by its open breaches (0 green). "
        "Silent devices: the panel beside.",
        thresholds=OK_RED,
        transformations=[
            {"id": "joinByField", "options": {"byField": "device", "mode": "outer"}},
        ],
        options={
            "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 5},
            "controls": {"showZoom": True, "mouseWheelZoom": True},
            "basemap": {"type": "default", "name": "Basemap"},
            "layers": [
                {
                    "type": "markers",
                    "name": "Vehicles",
                    "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                    "config": {
                        "style": {
                            "color": {"field": "open", "fixed": "green"},
                            "size": {"fixed": 8},
                            "text": {"field": "device", "mode": "field"},
                        }
                    },
                    "tooltip": True,
                }
            ],
        },
    )
    current = panel(
        "table",
        "Current temperature per probe",
        [
            target(
                "A",
                'SELECT last("celsius") AS "celsius" FROM "temperature" WHERE $timeFilter '
                'GROUP BY "device", "probe"',
                "table",
            ),
        ],
        (14, 0, 10, 12),
        unit="celsius",
        description="The last reading of each probe; a probe over its profile's limits has "
        "an open breach (below) with the limit it crossed.",
    )
    breaches = panel(
        "table",
        "Open breaches",
        [target("A", open_breaches(), "table")],
        (0, 12, 14, 8),
        description="Breaches whose last transition left them open, with their peak, "
        "degree-minutes and duration so far (min) as of the newest reading judged (breach "
        "measurement).",
        overrides=[override("severity", custom__cellOptions={"type": "color-text"})],
    )
    silent = panel(
        "table",
        "Silent devices on a delivery",
        [target("A", open_breaches(SILENT, '"severity", "start"'), "table")],
        (14, 12, 10, 8),
        description="Devices measuring a delivery in transit that sent nothing for "
        "COLDTRACE_ALERTS_SILENT_AFTER_S (rule device_silent).",
    )
    transit = panel(
        "table",
        "Deliveries in transit",
        [
            target(
                "A",
                'SELECT sum("in_transit") AS "in_transit" FROM "delivery" '
                'GROUP BY "vehicle", "compartment"',
                "table",
            )
        ],
        (0, 20, 24, 6),
        description="Per vehicle and compartment, how many deliveries are in transit now "
        "(measurement delivery: +1 at each start, -1 at each hand-over or cancellation; "
        "over all time, not the time range).",
    )
    return dashboard(
        FLEET_UID,
        "coldtrace: Fleet now",
        "Each vehicle's last position and state, current temperatures, open breaches, "
        "silent devices, deliveries in transit.",
        [geomap, current, breaches, silent, transit],
        time_from="now-24h",
    )


def delivery() -> JSON:
    """One delivery: its compartment's probes, limits, breaches, door and route."""
    temps = panel(
        "timeseries",
        "Temperature per probe against the profile limits",
        [
            target(
                "A",
                f'SELECT mean("celsius") FROM "temperature" WHERE {DEVICE} AND {PROBE} '
                'AND $timeFilter GROUP BY time($__interval), "device", "probe" fill(null)',
                alias="$tag_device $tag_probe",
            ),
            target(
                "B",
                f'SELECT mean("celsius") * 0 + $high_c AS "high limit" FROM "temperature" '
                f"WHERE {DEVICE} AND {PROBE} AND $timeFilter GROUP BY time($__interval) "
                "fill(none)",
            ),
            target(
                "C",
                f'SELECT mean("celsius") * 0 + $low_c AS "low limit" FROM "temperature" '
                f"WHERE {DEVICE} AND {PROBE} AND $timeFilter GROUP BY time($__interval) "
                "fill(none)",
            ),
        ],
        (0, 0, 24, 10),
        unit="celsius",
        description="Mean per $__interval of each probe that measured the compartment; "
        "the limits of the delivery's profile as red dashed lines; breaches as annotations.",
        overrides=[
            override(
                name,
                color={"mode": "fixed", "fixedColor": "red"},
                custom__lineStyle={"fill": "dash", "dash": [10, 10]},
            )
            for name in ("high limit", "low limit")
        ],
    )
    door = panel(
        "state-timeline",
        "Door",
        [
            target(
                "A",
                f'SELECT "door" FROM "device_health" WHERE {DEVICE} AND $timeFilter '
                'GROUP BY "device"',
                alias="$tag_device door",
            )
        ],
        (0, 10, 24, 4),
        description="The door contact of each device (true: open).",
    )
    route = panel(
        "geomap",
        "Route",
        [
            target(
                "A",
                f'SELECT "lat", "lon", "speed_kmh" FROM "position" WHERE {DEVICE} AND $timeFilter',
                "table",
            )
        ],
        (0, 14, 12, 12),
        options={
            "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 10},
            "basemap": {"type": "default", "name": "Basemap"},
            "layers": [
                {
                    "type": "route",
                    "name": "Route",
                    "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                    "config": {"style": {"color": {"fixed": "blue"}}},
                }
            ],
        },
    )
    certificate = panel(
        "table",
        "Certificate",
        [
            target(
                "A",
                'SELECT "reference", "verdict", "version", "mkt_c", "out_of_range_min", '
                '"breaches" FROM "certificate" WHERE "vehicle" = \'$vehicle\' '
                "AND \"compartment\" = '$compartment' AND $timeFilter",
                "table",
            )
        ],
        (12, 14, 12, 6),
        description="The current certificate of deliveries of this compartment that ended "
        "in the time range (certificate measurement).",
    )
    breaches = panel(
        "table",
        "Breaches",
        [
            target(
                "A",
                f'SELECT "transition", "severity", "state", "peak", "limit_c", '
                f'"degree_minutes", "suppressed" FROM "breach" WHERE {DEVICE} AND {TRANSITIONS} '
                'AND $timeFilter GROUP BY "device", "probe", "rule"',
                "table",
            )
        ],
        (12, 20, 12, 6),
    )
    variables = [
        text_variable("vehicle", "Vehicle", "van-01"),
        text_variable("compartment", "Compartment", "main"),
        query_variable(
            "device", "Device", 'SHOW TAG VALUES FROM "temperature" WITH KEY = "device"'
        ),
        query_variable(
            "probe",
            "Probe",
            f'SHOW TAG VALUES FROM "temperature" WITH KEY = "probe" WHERE {DEVICE}',
        ),
        text_variable("low_c", "Low limit (C)", "0"),
        text_variable("high_c", "High limit (C)", "4"),
    ]
    marks = annotation(
        "Breaches",
        f'SELECT "severity", "state", "peak", "rule", "probe", "transition" FROM "breach" '
        f"WHERE {DEVICE} AND {TRANSITIONS} AND $timeFilter",
        text="rule",
        tags="severity,transition,probe",
        colour="red",
    )
    return dashboard(
        DELIVERY_UID,
        "coldtrace: Delivery",
        "One delivery of one vehicle's compartment (open it from the API's delivery link).",
        [temps, door, route, certificate, breaches],
        variables=variables,
        annotations=[marks],
        refresh="",
    )


VERDICTS = ("compliant", "not_compliant", "incomplete")


def compliance() -> JSON:
    """Verdicts, breaches, time out of range and MKT over weeks."""
    per_week = panel(
        "barchart",
        "Deliveries per verdict per customer and week",
        [
            target(
                ref,
                f'SELECT count("delivery") AS "{verdict}" FROM "certificate" '
                f"WHERE \"verdict\" = '{verdict}' AND $timeFilter "
                'GROUP BY time(1w), "customer" fill(0)',
                alias=f"$tag_customer {verdict}",
            )
            for ref, verdict in zip("ABC", VERDICTS, strict=True)
        ],
        (0, 0, 24, 9),
        description="Deliveries by their current certificate's verdict, in the week their "
        "window ended.",
        options={"xField": "Time", "stacking": "normal"},
    )
    by_rule = panel(
        "table",
        "Breaches by rule and cause",
        [
            target(
                "A",
                'SELECT count("id") AS "breaches" FROM "breach" WHERE "transition" = \'opened\' '
                'AND $timeFilter GROUP BY "rule", "probe"',
                "table",
            )
        ],
        (0, 9, 12, 9),
        description="Breaches opened, by rule and by the probe that caused it (empty: the "
        "device: door, silence).",
    )
    out_of_range = panel(
        "bargauge",
        "Time out of range per vehicle",
        [
            target(
                "A",
                'SELECT sum("out_of_range_min") FROM "certificate" WHERE $timeFilter '
                'GROUP BY "vehicle"',
                alias="$tag_vehicle",
            )
        ],
        (12, 9, 12, 9),
        unit="m",
        description="Minutes out of the profile's range, summed over the deliveries ended.",
    )
    mkt = panel(
        "table",
        "MKT per delivery",
        [
            target(
                "A",
                'SELECT "reference", "customer", "verdict", "mkt_c", "out_of_range_min" '
                'FROM "certificate" WHERE $timeFilter GROUP BY "vehicle", "compartment"',
                "table",
            )
        ],
        (0, 18, 24, 9),
        description="Mean kinetic temperature of each delivery (its certificate; "
        "docs/certificates.md).",
    )
    return dashboard(
        COMPLIANCE_UID,
        "coldtrace: Compliance",
        "Verdicts per customer and week, breaches by rule, time out of range, MKT.",
        [per_week, by_rule, out_of_range, mkt],
        time_from="now-30d",
        refresh="",
    )


def devices() -> JSON:
    """The devices' own health and what ingest received and refused."""
    per_device = [
        ("Battery", "battery_v", "volt"),
        ("RSSI", "rssi_dbm", "dBm"),
    ]
    series = [
        panel(
            "timeseries",
            title,
            [
                target(
                    "A",
                    f'SELECT mean("{field}") FROM "device_health" WHERE {DEVICE} AND '
                    '$timeFilter GROUP BY time($__interval), "device" fill(null)',
                    alias="$tag_device",
                )
            ],
            (12 * i, 0, 12, 8),
            unit=unit,
        )
        for i, (title, field, unit) in enumerate(per_device)
    ]
    last_seen = panel(
        "table",
        "Last seen",
        [
            target(
                "A",
                'SELECT last("seq") AS "seq" FROM "device_health" '
                f'WHERE {DEVICE} AND $timeFilter GROUP BY "device"',
                "table",
            )
        ],
        (0, 8, 12, 8),
        description="Time: the device time of its last reading stored.",
    )
    gaps = panel(
        "table",
        "Sequence gaps",
        [
            target(
                "A",
                'SELECT sum("missing") AS "missing", count("missing") AS "gaps" FROM "seq_gap" '
                f'WHERE {DEVICE} AND $timeFilter GROUP BY "device", "source"',
                "table",
            )
        ],
        (12, 8, 12, 8),
        description="Readings still missing (source ingest: detected; device: reported "
        "dropped by the device).",
    )
    rejected = panel(
        "timeseries",
        "Rejected payloads by reason",
        [
            target(
                "A",
                'SELECT count("payload_bytes") FROM "rejected" WHERE $timeFilter '
                'GROUP BY time($__interval), "reason" fill(0)',
                alias="$tag_reason",
            )
        ],
        (0, 16, 12, 8),
        description="Dead letters per $__interval, at their wall-clock receipt.",
        custom={"drawStyle": "bars", "stacking": {"mode": "normal"}},
    )
    rate = panel(
        "timeseries",
        "Ingest rate",
        [
            target(
                "A",
                'SELECT count("seq") FROM "device_health" WHERE $timeFilter '
                "GROUP BY time($__interval) fill(0)",
                alias="readings",
            )
        ],
        (12, 16, 12, 8),
        description="Readings stored per $__interval, by device time.",
    )
    lag = panel(
        "timeseries",
        "Ingest lag",
        [
            target(
                "A",
                'SELECT max("lag_ms") FROM "ingest" WHERE $timeFilter '
                'GROUP BY time($__interval), "instance" fill(null)',
                alias="$tag_instance",
            )
        ],
        (0, 24, 12, 8),
        unit="ms",
        thresholds=[(None, "green"), (LAG_THRESHOLD_MS, "red")],
        description="From the broker handing a message to ingest to its readings stored, the "
        "longest per heartbeat (COLDTRACE_INGEST_HEARTBEAT_S; measurement ingest).",
    )
    stage = panel(
        "table",
        "Ingest and rules stage health",
        [
            target(
                "A",
                'SELECT last("up") AS "up", last("rules_ok") AS "rules_ok", '
                'last("rules_quarantined") AS "quarantined", last("inbox") AS "inbox" '
                'FROM "ingest" WHERE $timeFilter GROUP BY "instance"',
                "table",
            )
        ],
        (12, 24, 12, 8),
        description="The last heartbeat: ingest's /health, whether the rules stage judges "
        "every probe, how many probes it quarantined (ingest's /health names them).",
    )
    return dashboard(
        DEVICES_UID,
        "coldtrace: Devices and ingest",
        "Battery, RSSI, last seen, sequence gaps, rejected payloads, ingest rate and lag, "
        "the rules stage's health.",
        [*series, last_seen, gaps, rejected, rate, lag, stage],
        variables=[
            query_variable(
                "device", "Device", 'SHOW TAG VALUES FROM "device_health" WITH KEY = "device"'
            )
        ],
    )


def dashboards() -> list[JSON]:
    """Every dashboard, in the order of the folder."""
    return [fleet_now(), delivery(), compliance(), devices()]


def alert_rules() -> list[JSON]:
    """Grafana-managed rules a quality manager hears about with no dashboard open."""
    return [
        alert_rule(
            "coldtrace-open-critical-breach",
            "Open critical breach",
            count_open("", "critical"),
            above=0,
            window_s=BREACH_WINDOW_S,
            pending="0s",
            severity="critical",
            summary="{{ $labels.device }}: a critical breach is open",
            description="A probe of {{ $labels.device }} is past its profile's critical "
            "limit, or out of range past critical_after_min (breach measurement).",
        ),
        alert_rule(
            "coldtrace-silent-device",
            "Silent device on a delivery",
            count_open(SILENT),
            above=0,
            window_s=BREACH_WINDOW_S,
            pending="0s",
            severity="major",
            summary="{{ $labels.device }} is silent on a delivery in transit",
            description="No reading for COLDTRACE_ALERTS_SILENT_AFTER_S from a device "
            "measuring a delivery in transit (rule device_silent).",
        ),
        alert_rule(
            "coldtrace-ingest-lag",
            "Ingest lag over a minute",
            'SELECT max("lag_ms") AS "lag_ms" FROM "ingest" WHERE $timeFilter GROUP BY "instance"',
            above=LAG_THRESHOLD_MS,
            window_s=LAG_WINDOW_S,
            pending="5m",
            severity="critical",
            summary="Readings take more than a minute from the broker into InfluxDB",
            description="Ingest is behind (InfluxDB slow or away, or more than it can take): "
            "alerts and dashboards are late. No heartbeat at all for 5 minutes: ingest is "
            "not running.",
            no_data="Alerting",
        ),
        alert_rule(
            "coldtrace-rejects-rising",
            "Rejected payloads rising",
            'SELECT count("payload_bytes") AS "rejected" FROM "rejected" WHERE $timeFilter',
            above=REJECTS_THRESHOLD,
            window_s=REJECTS_WINDOW_S,
            pending="5m",
            severity="major",
            summary="More than 10 payloads dead-lettered in 15 minutes",
            description="Ingest refuses payloads (Devices and ingest dashboard: by reason); "
            "a device or gateway is sending what the contract does not accept.",
        ),
    ]
