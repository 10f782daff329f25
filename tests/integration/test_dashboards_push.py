"""`coldtrace dashboards push` against a stand-in of Grafana's HTTP API
(tests/grafana_standin.py): the first push creates the folder, the datasource, the four
dashboards and the alert rules; a second changes nothing (it only reads); a change made in
Grafana is put back, and only that."""

from __future__ import annotations

import json

from dashboards import definitions
from dashboards.push import connect, push
from tests.conftest import run_coldtrace
from tests.grafana_standin import GrafanaStandIn

TOKEN = "glsa_test_token"
DASHBOARDS = [d["uid"] for d in definitions.dashboards()]
RULES = [r["uid"] for r in definitions.alert_rules()]


def test_a_first_push_creates_everything_and_a_second_changes_nothing() -> None:
    with GrafanaStandIn(TOKEN) as grafana:
        api = connect(grafana.url, TOKEN)
        first = push(api, "http://influxdb:8086", "coldtrace")
        assert [(c.kind, c.uid, c.action) for c in first] == [
            ("folder", "coldtrace", "created"),
            ("datasource", "coldtrace-influxdb", "created"),
            *[("dashboard", uid, "created") for uid in DASHBOARDS],
            *[("alert rule", uid, "created") for uid in RULES],
        ]
        assert grafana.calls() == [
            ("GET", "/api/folders/coldtrace"),
            ("POST", "/api/folders"),
            ("GET", "/api/datasources/uid/coldtrace-influxdb"),
            ("POST", "/api/datasources"),
            *[
                x
                for uid in DASHBOARDS
                for x in (("GET", f"/api/dashboards/uid/{uid}"), ("POST", "/api/dashboards/db"))
            ],
            *[
                x
                for uid in RULES
                for x in (
                    ("GET", f"/api/v1/provisioning/alert-rules/{uid}"),
                    ("POST", "/api/v1/provisioning/alert-rules"),
                )
            ],
        ]
        state = grafana.state
        assert state.datasources["coldtrace-influxdb"]["url"] == "http://influxdb:8086"
        assert {u: d["meta"]["folderUid"] for u, d in state.dashboards.items()} == dict.fromkeys(
            DASHBOARDS, "coldtrace"
        )
        assert {
            u: (r["folderUID"], r["ruleGroup"]) for u, r in state.rules.items()
        } == dict.fromkeys(RULES, ("coldtrace", "coldtrace"))

        second = push(api, "http://influxdb:8086", "coldtrace")
        assert {c.action for c in second} == {"unchanged"}
        assert {method for method, _ in grafana.calls()} == {"GET"}


def test_what_was_changed_in_grafana_is_put_back_and_only_that() -> None:
    with GrafanaStandIn(TOKEN) as grafana:
        api = connect(grafana.url, TOKEN)
        push(api, "http://influxdb:8086", "coldtrace")
        grafana.calls()
        state = grafana.state
        state.dashboards["coldtrace-delivery"]["dashboard"]["title"] = "edited in the UI"
        state.rules["coldtrace-rejects-rising"]["for"] = "1h"
        changes = push(api, "http://influxdb:8086", "coldtrace")
        assert [(c.uid, c.action) for c in changes if c.action != "unchanged"] == [
            ("coldtrace-delivery", "updated"),
            ("coldtrace-rejects-rising", "updated"),
        ]
        writes = [c for c in grafana.calls() if c[0] != "GET"]
        assert writes == [
            ("POST", "/api/dashboards/db"),
            ("PUT", "/api/v1/provisioning/alert-rules/coldtrace-rejects-rising"),
        ]
        assert state.dashboards["coldtrace-delivery"]["dashboard"]["title"] == "coldtrace: Delivery"
        assert state.dashboards["coldtrace-delivery"]["dashboard"]["version"] == 2
        # Another InfluxDB: the datasource follows.
        assert [
            (c.uid, c.action)
            for c in push(api, "http://other:8086", "coldtrace")
            if c.action != "unchanged"
        ] == [("coldtrace-influxdb", "updated")]


def test_coldtrace_dashboards_push_twice_then_with_a_wrong_token() -> None:
    with GrafanaStandIn(TOKEN) as grafana:
        args = ("dashboards", "push", "--url", grafana.url, "--influx-url", "http://influxdb:8086")
        first = run_coldtrace(*args, "--token", TOKEN, "--json")
        assert first.returncode == 0, first.stderr
        assert [c["action"] for c in json.loads(first.stdout)] == ["created"] * (
            2 + len(DASHBOARDS) + len(RULES)
        )
        grafana.calls()
        second = run_coldtrace(*args, "--token", TOKEN)
        assert second.returncode == 0, second.stderr
        lines = second.stdout.splitlines()
        assert lines[0].split() == ["KIND", "UID", "TITLE", "ACTION"]
        assert all(line.endswith("unchanged") for line in lines[1:]) and len(lines) == 1 + 2 + len(
            DASHBOARDS
        ) + len(RULES)
        assert {method for method, _ in grafana.calls()} == {"GET"}

        wrong = run_coldtrace(*args, "--token", "not-the-token")
        assert wrong.returncode == 1
        assert wrong.stderr.strip().splitlines() == [
            f"error: Grafana at {grafana.url} refused the token: give a service account token "
            "with the Editor role"
        ]
    gone = run_coldtrace(*args, "--token", TOKEN)
    assert (gone.returncode, gone.stderr) == (
        1,
        f"error: cannot reach Grafana at {grafana.url} (Failed to establish a new connection: "
        "[Errno 111] Connection refused): check --url\n",
    )
    no_scheme = run_coldtrace("dashboards", "push", "--url", "localhost:3000", "--token", TOKEN)
    assert (no_scheme.returncode, no_scheme.stderr) == (
        2,
        "error: --url 'localhost:3000': give it as http://HOST:PORT\n",
    )
