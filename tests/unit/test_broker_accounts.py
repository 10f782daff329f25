"""The broker's account files as coldtrace.broker_accounts writes them: mosquitto_passwd's
hash format, the password file's lines, the ACL's generated gateway section."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest

from coldtrace.broker_accounts import (
    GENERATED_MARK,
    BrokerAccounts,
    BrokerFiles,
    hash_password,
)

RULES = "# shipped rules\npattern write coldtrace/v1/%u/telemetry\n"


@pytest.fixture
def broker(tmp_path: Path) -> BrokerAccounts:
    accounts = BrokerAccounts(BrokerFiles(tmp_path / "passwd", tmp_path / "acl"))
    accounts.install_rules(RULES)
    return accounts


def test_hash_is_mosquitto_passwds() -> None:
    """The same salt gives the hash mosquitto_passwd's own check accepts: PBKDF2-SHA512."""
    salt = bytes(range(12))
    hashed = hash_password("s3cret", salt)
    digest = hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 101)
    assert hashed == f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def test_mosquitto_passwd_reads_our_file(broker: BrokerAccounts, tmp_path: Path) -> None:
    """mosquitto_passwd -D (delete) parses the file we wrote and leaves the other line."""
    broker.set_passwords({"box-1": "a", "box-2": "b"})
    subprocess.run(["mosquitto_passwd", "-D", str(tmp_path / "passwd"), "box-1"], check=True)
    assert broker.usernames() == {"box-2"}


def test_passwords_added_replaced_and_removed(broker: BrokerAccounts, tmp_path: Path) -> None:
    broker.set_passwords({"box-1": "a", "box-2": "b"})
    first = (tmp_path / "passwd").read_text().splitlines()
    broker.set_passwords({"box-1": "c"})
    second = (tmp_path / "passwd").read_text().splitlines()
    assert [ln.split(":")[0] for ln in second] == ["box-1", "box-2"]
    assert second[0] != first[0] and second[1] == first[1]
    assert broker.remove("box-1") is True
    assert broker.remove("box-1") is False
    assert broker.usernames() == {"box-2"}
    assert (tmp_path / "passwd").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("name", ["a:b", "a\nb", "+", "#", ""])
def test_a_name_that_would_corrupt_the_file_is_refused(broker: BrokerAccounts, name: str) -> None:
    with pytest.raises(ValueError):
        broker.set_passwords({name: "x"})
    assert broker.usernames() == set()


def test_gateway_section(broker: BrokerAccounts, tmp_path: Path) -> None:
    broker.set_passwords({"gw-1": "x"})
    broker.set_gateway("gw-1", ["box-1", "box-2"])
    broker.set_gateway("gw-0", ["box-3"])
    assert broker.gateways() == {"gw-0": ["box-3"], "gw-1": ["box-1", "box-2"]}
    assert (tmp_path / "acl").read_text() == RULES + "\n" + GENERATED_MARK + "\n" + (
        "user gw-0\n"
        "topic write coldtrace/v1/box-3/telemetry\n"
        "topic write coldtrace/v1/box-3/status\n"
        "topic read coldtrace/v1/box-3/config\n"
        "topic read coldtrace/v1/box-3/ack\n"
        "user gw-1\n"
        "topic write coldtrace/v1/box-1/telemetry\n"
        "topic write coldtrace/v1/box-1/status\n"
        "topic read coldtrace/v1/box-1/config\n"
        "topic read coldtrace/v1/box-1/ack\n"
        "topic write coldtrace/v1/box-2/telemetry\n"
        "topic write coldtrace/v1/box-2/status\n"
        "topic read coldtrace/v1/box-2/config\n"
        "topic read coldtrace/v1/box-2/ack\n"
    )
    # New shipped rules keep the generated section; removing the account drops its lines.
    broker.install_rules("# new rules\n")
    assert (tmp_path / "acl").read_text().startswith("# new rules\n\n" + GENERATED_MARK)
    assert broker.gateways() == {"gw-0": ["box-3"], "gw-1": ["box-1", "box-2"]}
    broker.remove("gw-1")
    assert broker.gateways() == {"gw-0": ["box-3"]}


def test_reload_without_a_broker_is_false(broker: BrokerAccounts, tmp_path: Path) -> None:
    assert broker.reload() is False
    pidfile = tmp_path / "mosquitto.pid"
    no_pid_files = BrokerAccounts(BrokerFiles(tmp_path / "passwd", tmp_path / "acl", pidfile))
    assert no_pid_files.reload() is False
