"""`coldtrace devices add|list|rotate|disable` as a user runs it, against the session's real
broker (its password and ACL files in the run dir, reloaded by SIGHUP): the printed password
logs in; after rotate the old one fails and the new one works; after disable the device
cannot log in and is still listed; a gateway gets its boxes' topics; errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

from coldtrace.contract import telemetry_topic
from coldtrace.settings import Settings
from tests.conftest import run_coldtrace
from tests.e2e.test_broker_security import DENIED, Probe
from tests.e2e.test_device_accounts import OK, UNHEARD, connack, logs_in, refused


def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The session broker's run dir and ports; a store of the test's own."""
    return {
        "COLDTRACE_RUN_DIR": str(settings.run_dir),
        "COLDTRACE_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "COLDTRACE_MQTT_PORT": str(settings.mqtt_port),
        "COLDTRACE_MQTT_TLS_PORT": str(settings.mqtt_tls_port),
    }


def devices(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    done = run_coldtrace("devices", *args, "--json", **env)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def test_add_list_rotate_disable(settings: Settings, tmp_path: Path, prefix: str) -> None:
    env = cli_env(settings, tmp_path)
    a, b, gw = f"{prefix}-a", f"{prefix}-b", f"{prefix}-gw"
    added = devices(env, "add", a, b)
    assert [(r["device"], r["carries"]) for r in added] == [(a, None), (b, None)]
    pw = {str(r["device"]): str(r["password"]) for r in added}
    for device in (a, b):
        logs_in(settings, device, pw[device])
    [gateway] = devices(env, "add", gw, "--gateway", "--carries", f"{a},{b}")
    assert gateway["carries"] == f"{a},{b}"
    logs_in(settings, gw, str(gateway["password"]))

    [rotated] = devices(env, "rotate", a)
    assert rotated["device"] == a and rotated["password"] != pw[a]
    logs_in(settings, a, str(rotated["password"]))
    assert connack(settings, a, pw[a]) == DENIED

    done = run_coldtrace("devices", "disable", b, **env)
    assert (done.returncode, done.stdout) == (
        0,
        f"device {b} disabled: its broker login is refused; its row stays\n",
    )
    refused(settings, b, pw[b])

    listed = devices(env, "list")
    assert [
        (r["device"], r["kind"], r["carries"], r["login"], r["disabled"] is not None)
        for r in listed
    ] == [
        (a, "device", None, "active", False),
        (b, "device", None, "disabled", True),
        (gw, "gateway", f"{a},{b}", "active", False),
    ]
    table = run_coldtrace("devices", "list", **env).stdout.splitlines()
    assert table[0].split() == [
        "DEVICE",
        "KIND",
        "CARRIES",
        "LOGIN",
        "LABEL",
        "CREATED",
        "DISABLED",
    ]
    assert len(table) == 4

    # The gateway publishes for a box it carries, disabled or not: the box is not logging in.
    probe = Probe(settings, gw, str(gateway["password"]))
    try:
        assert probe.publish(telemetry_topic(b)) in (OK, UNHEARD)
    finally:
        probe.close()


def test_errors_are_one_line(settings: Settings, tmp_path: Path, prefix: str) -> None:
    env = cli_env(settings, tmp_path)
    device = f"{prefix}-a"
    devices(env, "add", device)
    for args, message in [
        (("add", device), f"error: device {device!r} exists already\n"),
        (("rotate", f"{prefix}-none"), f"error: no device '{prefix}-none'\n"),
        (("disable", f"{prefix}-none"), f"error: no device '{prefix}-none'\n"),
        (
            ("add", f"{prefix}-gw", "--carries", f"{prefix}-none"),
            f"error: box '{prefix}-none' is not registered: add it first\n",
        ),
        (
            ("add", "monitor"),
            "error: 'monitor' is one of the broker's own accounts: pick another id\n",
        ),
        (
            ("add", f"{prefix}-gw", "--gateway"),
            "error: --gateway: name the boxes it carries with --carries\n",
        ),
    ]:
        done = run_coldtrace("devices", *args, **env)
        # (the store's migration check logs above it)
        assert (done.returncode, done.stderr.splitlines()[-1] + "\n") == (2, message), args
        assert "Traceback" not in done.stderr
    bad = run_coldtrace("devices", "add", "a:b", **env)
    assert bad.returncode == 2 and "invalid device id 'a:b'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_production_without_broker_files_says_what_to_set(tmp_path: Path) -> None:
    done = run_coldtrace(
        "devices",
        "list",
        COLDTRACE_ENV="production",
        COLDTRACE_RUN_DIR=str(tmp_path),
        COLDTRACE_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
    )
    assert (done.returncode, done.stderr) == (
        2,
        "configuration error: COLDTRACE_MQTT_PASSWD_FILE and COLDTRACE_MQTT_ACL_FILE must be "
        "set: device accounts are written to the broker's password and ACL files "
        "(docs/security.md)\n",
    )
