"""`coldtrace dashboards push`: the folder, the InfluxDB datasource, the dashboards and the
alert rules of dashboards/ into a running Grafana (dashboards/README.md)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys

from coldtrace.cli.output import emit
from coldtrace.settings import Settings

TOKEN_ENV = "GRAFANA_TOKEN"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dashboards` to the CLI's subcommands."""
    p = sub.add_parser("dashboards", help="Grafana: push the dashboards and alert rules")
    actions = p.add_subparsers(dest="action", required=True)
    push = actions.add_parser(
        "push",
        help="upsert the folder, datasource, dashboards and alert rules (again: no change)",
    )
    push.add_argument("--url", help="Grafana's address (default: COLDTRACE_GRAFANA_URL)")
    push.add_argument(
        "--token", help=f"a service account token, Editor role (default: ${TOKEN_ENV})"
    )
    push.add_argument(
        "--influx-url", help="InfluxDB as Grafana reaches it (default: COLDTRACE_INFLUX_URL)"
    )
    push.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dashboards, generate_secrets=False)


def cmd_dashboards(settings: Settings, args: argparse.Namespace) -> int:
    """One table row per object pushed (kind, uid, title, action); exit 1 naming what
    Grafana refused, or that it cannot be reached."""
    from grafana_client.client import GrafanaClientError, GrafanaException
    from niquests.exceptions import RequestException

    from dashboards.push import connect, push

    url = args.url or settings.grafana_url
    token = args.token or os.environ.get(TOKEN_ENV)
    if not url:
        print("error: give Grafana's address: --url or COLDTRACE_GRAFANA_URL", file=sys.stderr)
        return 2
    if not url.startswith(("http://", "https://")):
        print(f"error: --url {url!r}: give it as http://HOST:PORT", file=sys.stderr)
        return 2
    if not token:
        print(f"error: give a service account token: --token or ${TOKEN_ENV}", file=sys.stderr)
        return 2
    influx_url = args.influx_url or settings.influx_url
    try:
        changes = push(connect(url, token), influx_url, settings.influx_database)
    except GrafanaClientError as exc:
        why = (
            "refused the token: give a service account token with the Editor role"
            if exc.status_code in (401, 403)
            else f"refused a request: {str(exc).splitlines()[0]}"
        )
        print(f"error: Grafana at {url} {why}", file=sys.stderr)
        return 1
    except (GrafanaException, RequestException, OSError) as exc:
        print(
            f"error: cannot reach Grafana at {url} ({_reason(exc)}): check --url", file=sys.stderr
        )
        return 1
    emit([dataclasses.asdict(c) for c in changes], args.json)
    return 0


def _reason(exc: Exception) -> str:
    """What the connection attempt itself said ("Failed to establish a new connection:
    [Errno 111] Connection refused", "Failed to resolve 'host' (...)"), without the HTTP
    library's pool and object reprs wrapped around it; else the first line."""
    text = str(exc)
    found = re.search(r"object at 0x[0-9a-f]+>: (.*)[\"']\)+$", text)
    if found:
        return found.group(1)
    return text.splitlines()[0] if text else type(exc).__name__
