"""Put the folder, the datasource, the dashboards and the alert rules into a running Grafana
through its HTTP API (grafana-client), idempotently: each is read first and written only
when missing or different, so a second push writes nothing.

Routes (Grafana HTTP API reference): folders GET/POST /api/folders[/:uid], PUT to rename;
datasources GET /api/datasources/uid/:uid, POST /api/datasources, PUT
/api/datasources/uid/:uid; dashboards GET /api/dashboards/uid/:uid, POST /api/dashboards/db;
alert rules GET/PUT /api/v1/provisioning/alert-rules/:uid, POST
/api/v1/provisioning/alert-rules (the rule group is created with the first rule)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from dashboards.definitions import RULE_GROUP, alert_rules, dashboards
from dashboards.files import datasource
from dashboards.grafana import DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID, JSON

Action = Literal["created", "updated", "unchanged"]
MESSAGE = "coldtrace dashboards push"
# What Grafana adds to a dashboard it stores (not ours to compare).
DASHBOARD_META = ("id", "version")


@dataclass(frozen=True)
class Change:
    """What the push did to one object: ``kind`` folder, datasource, dashboard, alert rule."""

    kind: str
    uid: str
    title: str
    action: Action


def _get(call: Any, *args: Any) -> Any:
    """The object, or None when Grafana answers 404."""
    try:
        return call(*args)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


def _differs(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    """Whether a field we set has another value in Grafana (fields Grafana adds are not
    compared; objects we set are compared whole)."""
    return any(have.get(k) != v for k, v in want.items())


def push_folder(api: GrafanaApi) -> Change:
    have = _get(api.folder.get_folder, FOLDER_UID)
    if have is None:
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        action: Action = "created"
    elif have.get("title") != FOLDER_TITLE:
        api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
        action = "updated"
    else:
        action = "unchanged"
    return Change("folder", FOLDER_UID, FOLDER_TITLE, action)


def push_datasource(api: GrafanaApi, influx_url: str, database: str) -> Change:
    want = datasource(influx_url, database)
    have = _get(api.datasource.get_datasource_by_uid, DATASOURCE_UID)
    if have is None:
        api.datasource.create_datasource(want)
        action: Action = "created"
    elif _differs(want, have):
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, want)
        action = "updated"
    else:
        action = "unchanged"
    return Change("datasource", DATASOURCE_UID, want["name"], action)


def push_dashboard(api: GrafanaApi, d: JSON) -> Change:
    found = _get(api.dashboard.get_dashboard, d["uid"])
    if found is not None:
        have = {k: v for k, v in found["dashboard"].items() if k not in DASHBOARD_META}
        if have == d and found.get("meta", {}).get("folderUid") == FOLDER_UID:
            return Change("dashboard", d["uid"], d["title"], "unchanged")
    api.dashboard.update_dashboard(
        {"dashboard": d, "folderUid": FOLDER_UID, "overwrite": True, "message": MESSAGE}
    )
    return Change("dashboard", d["uid"], d["title"], "created" if found is None else "updated")


def push_rule(api: GrafanaApi, rule: JSON) -> Change:
    want = {**rule, "folderUID": FOLDER_UID, "ruleGroup": RULE_GROUP, "orgID": 1}
    have = _get(api.alertingprovisioning.get_alertrule, rule["uid"])
    if have is None:
        api.alertingprovisioning.create_alertrule(want)
        action: Action = "created"
    elif _differs(want, have):
        api.alertingprovisioning.update_alertrule(rule["uid"], want)
        action = "updated"
    else:
        action = "unchanged"
    return Change("alert rule", rule["uid"], rule["title"], action)


def push(api: GrafanaApi, influx_url: str, database: str) -> list[Change]:
    """Everything, in dependency order (the folder holds the dashboards and the rules; the
    datasource is what they query): what each push did."""
    changes = [push_folder(api), push_datasource(api, influx_url, database)]
    changes += [push_dashboard(api, d) for d in dashboards()]
    changes += [push_rule(api, r) for r in alert_rules()]
    return changes


def connect(url: str, token: str, timeout_s: float = 10.0) -> GrafanaApi:
    """A client of the Grafana at ``url`` (http(s)://host:port[/path]) with a service
    account token."""
    return GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
