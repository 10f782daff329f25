"""docker-compose.yml, checked without a container engine (none runs here): every coldtrace
command is a real subcommand with valid options, every COLDTRACE_ variable is read by the
container it is given to, every file mounted exists (or is the operator's to make, and
documented), every image is pinned, every service is watched by a healthcheck and waited
for healthy, every secret is required, every stateful service has a volume."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from coldtrace.cli import build_parser
from coldtrace.settings import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
# Made by the operator before the first start (docs/deploy.md), never committed.
OPERATOR_MADE = {"deploy/mosquitto/accounts"}
PINNED = re.compile(r"^[\w./-]+:\d+\.\d+(\.\d+)?(-[\w.]+)?$")
VARIABLE = re.compile(r"\$\{(\w+)(:[?-])?([^}]*)\}")
# A public key is no secret (the retired signing keys' public halves are optional).
SECRET = re.compile(r"PASSWORD|(?<!PUBLIC_)KEY|SECRET|TOKEN")
# Where each service keeps its state.
STATE = {
    "mosquitto": "/mosquitto/data",
    "influxdb": "/var/lib/influxdb",
    "postgres": "/var/lib/postgresql/data",
    "ingest": "/var/lib/coldtrace",
    "grafana": "/var/lib/grafana",
}


def ours(name: str) -> bool:
    """A coldtrace service: built from the repo's Dockerfile."""
    return "build" in SERVICES[name]


def one_shot(name: str) -> bool:
    """A step the others wait for to finish (the migrations), not a server."""
    return any(
        dep.get("condition") == "service_completed_successfully"
        for s in SERVICES.values()
        for n, dep in s.get("depends_on", {}).items()
        if n == name
    )


def mounts(name: str) -> list[tuple[str, str]]:
    """(host path relative to the repo, container path) of the service's bind mounts."""
    out = []
    for v in SERVICES[name].get("volumes", []):
        host, container = v.split(":")[:2]
        if host.startswith("./"):
            out.append((host[2:], container))
    return out


def test_the_services_are_the_production_stack() -> None:
    assert set(SERVICES) == {
        "mosquitto",
        "influxdb",
        "postgres",
        "migrate",
        "ingest",
        "api",
        "grafana",
    }
    assert [SERVICES[n]["command"] for n in ("migrate", "ingest")] == [
        ["coldtrace", "db", "upgrade"],
        ["coldtrace", "ingest"],
    ]
    assert SERVICES["api"]["command"][:2] == ["coldtrace", "api"]


@pytest.mark.parametrize("name", [n for n in SERVICES if ours(n)])
def test_every_coldtrace_command_is_a_real_subcommand_with_valid_options(name: str) -> None:
    command = SERVICES[name]["command"]
    assert command[0] == "coldtrace"
    try:
        build_parser().parse_args(command[1:])
    except SystemExit:
        pytest.fail(f"{name}: `{' '.join(command)}` is not a valid coldtrace command")


def test_the_command_check_catches_a_wrong_option() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["api", "--hots", "0.0.0.0"])


def environment(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment", {})
    return {k: str(v) for k, v in env.items() if k != "<<"} | {
        k: str(v) for k, v in env.get("<<", {}).items()
    }


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_coldtrace_variable_is_read_by_its_container(name: str) -> None:
    given = [k for k in environment(name) if k.startswith(ENV_PREFIX)]
    if ours(name):
        # a setting (coldtrace/settings.py): anything else would be ignored without a word
        unknown = [
            k for k in given if k.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields
        ]
    else:
        # another program's container: the files mounted into it use it
        texts = "".join(
            p.read_text()
            if p.is_file()
            else "".join(f.read_text() for f in p.rglob("*") if f.is_file())
            for host, _ in mounts(name)
            if (p := REPO / host).exists()
        )
        unknown = [k for k in given if k not in texts]
    assert unknown == [], f"{name}: {unknown} are read by nothing"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_mounted_file_exists(name: str) -> None:
    for host, container in mounts(name):
        if host in OPERATOR_MADE:
            ignored = subprocess.run(["git", "check-ignore", "-q", host], cwd=REPO)
            assert ignored.returncode == 0, f"{host} must never be committed"
            assert host in (REPO / "docs/deploy.md").read_text(), f"docs/deploy.md: make {host}"
        else:
            assert (REPO / host).exists(), f"{name}: {host} (mounted at {container}) is missing"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_image_is_pinned_to_a_version(name: str) -> None:
    if ours(name):
        base = next(
            line.split()[1]
            for line in (REPO / "Dockerfile").read_text().splitlines()
            if line.startswith("FROM ")
        )
        assert PINNED.match(base), f"Dockerfile: FROM {base} is not pinned to a version"
    else:
        assert PINNED.match(SERVICES[name]["image"]), f"{name}: {SERVICES[name]['image']}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck_and_is_waited_for_healthy(name: str) -> None:
    service = SERVICES[name]
    if one_shot(name):
        assert "restart" not in service, f"{name} runs once"
    else:
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for dep, cond in service.get("depends_on", {}).items():
        want = "service_completed_successfully" if one_shot(dep) else "service_healthy"
        assert cond == {"condition": want}, f"{name} starts before {dep} is ready"


def test_every_variable_from_the_host_is_required_or_has_a_default() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    found = VARIABLE.findall(text)
    assert found, "no variable at all?"
    for var, form, rest in found:
        if SECRET.search(var):
            assert form == ":?" and rest, f"the secret ${{{var}}} must be required: ${{{var}:?...}}"
        else:
            assert form in (":?", ":-"), f"${{{var}}} must be required or have a default"
    assert not re.search(r"\$\{\w+\}", text), "a bare ${VAR} becomes empty when unset"


@pytest.mark.parametrize("name", sorted(STATE))
def test_every_stateful_service_keeps_its_state_in_a_volume(name: str) -> None:
    named = {v.split(":")[0]: v.split(":")[1] for v in SERVICES[name]["volumes"]}
    assert STATE[name] in named.values(), f"{name} would lose {STATE[name]}"
    assert all(k in COMPOSE["volumes"] for k in named if not k.startswith("."))
