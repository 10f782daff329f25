"""load_settings(): development secrets, and one clear line naming a bad setting."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from coldtrace import signing
from coldtrace.devtools.services import free_port
from coldtrace.settings import ConfigError, load_settings
from tests.conftest import run_coldtrace

pytestmark = pytest.mark.usefixtures("clean_env")


def secrets_of(run_dir: Path) -> dict[str, str]:
    text = (run_dir / "secrets.env").read_text()
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def test_development_settings_generate_secrets(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    s = load_settings(run_dir=run_dir)

    assert s.env == "development"
    assert s.run_dir == run_dir
    assert (s.mqtt_host, s.mqtt_port) == ("127.0.0.1", 1883)
    assert s.influx_url == "http://127.0.0.1:8086"

    env_file = run_dir / "secrets.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    secrets = secrets_of(run_dir)
    assert sorted(secrets) == [
        "COLDTRACE_CERTIFICATE_SIGNING_KEY",
        "COLDTRACE_DEV_DEVICE_KEY",
        "COLDTRACE_MQTT_PASSWORD",
        "COLDTRACE_MQTT_USERNAME",
    ]
    assert secrets["COLDTRACE_MQTT_USERNAME"] == "ingest"
    assert len(secrets["COLDTRACE_MQTT_PASSWORD"]) == 32  # token_urlsafe(24)
    assert s.mqtt_username == "ingest"
    assert s.mqtt_password is not None
    assert s.mqtt_password.get_secret_value() == secrets["COLDTRACE_MQTT_PASSWORD"]
    assert s.dev_device_key is not None
    assert s.dev_device_key.get_secret_value() == secrets["COLDTRACE_DEV_DEVICE_KEY"]


def test_each_run_dir_gets_its_own_random_password(tmp_path: Path) -> None:
    a = load_settings(run_dir=tmp_path / "a").mqtt_password
    b = load_settings(run_dir=tmp_path / "b").mqtt_password

    assert a is not None and b is not None
    assert a.get_secret_value() != b.get_secret_value()
    assert (
        secrets_of(tmp_path / "a")["COLDTRACE_DEV_DEVICE_KEY"]
        != (secrets_of(tmp_path / "b")["COLDTRACE_DEV_DEVICE_KEY"])
    )


def test_secrets_are_generated_once_per_run_dir(tmp_path: Path) -> None:
    first = load_settings(run_dir=tmp_path).mqtt_password
    again = load_settings(run_dir=tmp_path).mqtt_password

    assert first is not None and again is not None
    assert first.get_secret_value() == again.get_secret_value()


def test_run_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDTRACE_RUN_DIR", str(tmp_path / "elsewhere"))

    s = load_settings()

    assert s.run_dir == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere" / "secrets.env").is_file()


def test_environment_wins_over_the_secrets_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLDTRACE_MQTT_PASSWORD", "from-the-env")
    monkeypatch.setenv("COLDTRACE_MQTT_PORT", "11883")

    s = load_settings(run_dir=tmp_path)

    assert s.mqtt_password is not None
    assert s.mqtt_password.get_secret_value() == "from-the-env"
    assert s.mqtt_port == 11883


@pytest.mark.parametrize("port", ["99999", "abc", "0", "65536", ""])
def test_bad_mqtt_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("COLDTRACE_MQTT_PORT", port)

    with pytest.raises(ConfigError) as info:
        load_settings(run_dir=tmp_path)

    message = str(info.value)
    assert message.startswith("COLDTRACE_MQTT_PORT: ")
    assert message.endswith(f"(got {port!r})")
    assert "\n" not in message


def test_highest_mqtt_port_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDTRACE_MQTT_PORT", "65535")
    assert load_settings(run_dir=tmp_path).mqtt_port == 65535


LOGIN_MISSING = (
    "COLDTRACE_MQTT_USERNAME and COLDTRACE_MQTT_PASSWORD must be set: ingest logs in to the "
    "broker with them"
)


@pytest.mark.parametrize("env", [{}, {"COLDTRACE_MQTT_USERNAME": "ingest"}])
def test_production_asks_for_the_mqtt_login_only_where_it_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """The API and the other commands load without it; ingest's login names what is missing."""
    monkeypatch.setenv("COLDTRACE_ENV", "production")
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    s = load_settings(run_dir=tmp_path)

    with pytest.raises(ConfigError) as info:
        s.mqtt_login  # noqa: B018
    assert str(info.value) == LOGIN_MISSING
    assert not (tmp_path / "secrets.env").exists()  # never generated in production


def test_production_does_not_read_a_development_secrets_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_settings(run_dir=tmp_path)  # development: writes tmp_path/secrets.env
    monkeypatch.setenv("COLDTRACE_ENV", "production")

    s = load_settings(run_dir=tmp_path)

    assert (s.mqtt_username, s.mqtt_password, s.certificate_signing_key) == (None, None, None)


def test_ingest_in_production_without_its_login_exits_2_naming_it(tmp_path: Path) -> None:
    proc = run_coldtrace("ingest", COLDTRACE_ENV="production", COLDTRACE_RUN_DIR=str(tmp_path))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"configuration error: {LOGIN_MISSING}\n"


DATABASE_URL_MISSING = (
    "COLDTRACE_DATABASE_URL must be set in production: the relational store every command and "
    "service shares (postgresql+psycopg://ROLE:PASSWORD@HOST:PORT/DATABASE, or sqlite:///PATH; "
    "docs/deploy.md)"
)


def test_production_has_no_default_relational_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLDTRACE_ENV", "production")
    with pytest.raises(ConfigError) as info:
        load_settings(run_dir=tmp_path).sqlalchemy_url  # noqa: B018
    assert str(info.value) == DATABASE_URL_MISSING

    monkeypatch.setenv("COLDTRACE_DATABASE_URL", f"sqlite:///{tmp_path / 'chosen.db'}")
    assert load_settings(run_dir=tmp_path).sqlalchemy_url == f"sqlite:///{tmp_path / 'chosen.db'}"


def test_development_store_defaults_to_sqlite_in_the_run_dir(tmp_path: Path) -> None:
    s = load_settings(run_dir=tmp_path)
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 'coldtrace.db'}"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("ingest",), {"COLDTRACE_MQTT_USERNAME": "ingest", "COLDTRACE_MQTT_PASSWORD": "s3cret"}),
        (("api",), {"COLDTRACE_CERTIFICATE_SIGNING_KEY": signing.new_private_key()}),
        (("keys", "create", "--role", "admin"), {}),
    ],
)
def test_production_without_the_store_exits_2_naming_it(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    """Before: ingest and `keys create` used a new SQLite file in the run dir, which the API
    on PostgreSQL never read (breaches and keys lost without a word)."""
    proc = run_coldtrace(
        *args,
        COLDTRACE_ENV="production",
        COLDTRACE_RUN_DIR=str(tmp_path),
        COLDTRACE_API_PORT=str(free_port()),
        COLDTRACE_INGEST_HEALTH_PORT=str(free_port()),
        COLDTRACE_MQTT_PORT=str(free_port()),  # nothing listens: it must stop before connecting
        **env,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines()[-1] == f"configuration error: {DATABASE_URL_MISSING}"
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "coldtrace.db").exists()


def test_production_with_its_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDTRACE_ENV", "production")
    monkeypatch.setenv("COLDTRACE_MQTT_USERNAME", "ingest")
    monkeypatch.setenv("COLDTRACE_MQTT_PASSWORD", "s3cret")
    monkeypatch.setenv("COLDTRACE_CERTIFICATE_SIGNING_KEY", signing.new_private_key())

    s = load_settings(run_dir=tmp_path)

    assert s.env == "production"
    assert s.mqtt_password is not None
    assert s.mqtt_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize("url", ["not a url", "127.0.0.1:8086", "ftp://influx:8086", ""])
def test_bad_influx_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("COLDTRACE_INFLUX_URL", url)

    with pytest.raises(ConfigError) as info:
        load_settings(run_dir=tmp_path)

    assert str(info.value).startswith("COLDTRACE_INFLUX_URL: ")


@pytest.mark.parametrize("url", ["http://influx:8086", "https://influx.example.com/"])
def test_good_influx_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("COLDTRACE_INFLUX_URL", url)
    assert load_settings(run_dir=tmp_path).influx_url == url


DB_USAGE = "use sqlite:///PATH or postgresql+psycopg://ROLE:PASSWORD@HOST:PORT/DATABASE"
DB = "COLDTRACE_DATABASE_URL"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://bar", f"{DB}='foo://bar': {DB_USAGE}"),
        # psycopg2, the driver plain postgresql:// means, is not installed; no password shown
        ("postgresql://a:pw@db/ct", f"{DB}='postgresql://a:***@db/ct': {DB_USAGE}"),
        ("not a url", f"{DB} is not a database URL: {DB_USAGE}"),
    ],
)  # fmt: skip
def test_a_database_url_coldtrace_cannot_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    """Refused with the settings, not at the first command that opens the store (a traceback)."""
    monkeypatch.setenv("COLDTRACE_DATABASE_URL", url)
    with pytest.raises(ConfigError) as info:
        load_settings(run_dir=tmp_path)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "url", ["sqlite:////var/lib/coldtrace/db.sqlite", "postgresql+psycopg://a:pw@db:5432/ct"]
)
def test_database_urls_coldtrace_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("COLDTRACE_DATABASE_URL", url)
    assert load_settings(run_dir=tmp_path).database_url == url


def test_overrides_are_validated_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^COLDTRACE_INGEST_BATCH_MESSAGES: "):
        load_settings(run_dir=tmp_path, ingest_batch_messages=0)


def test_cli_reports_a_bad_setting_in_one_line_and_exits_2(tmp_path: Path) -> None:
    proc = run_coldtrace(
        "ingest", COLDTRACE_MQTT_PORT="abc", COLDTRACE_RUN_DIR=str(tmp_path / "run")
    )

    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("configuration error: COLDTRACE_MQTT_PORT: ")
    assert lines[0].endswith("(got 'abc')")


APP_URL = "postgresql+psycopg://coldtrace:app-pw@db.example:5432/coldtrace"


@pytest.mark.parametrize(
    ("database_url", "migration_url", "says"),
    [
        (None, "postgresql+psycopg://owner@db.example:5432/coldtrace", "needs COLDTRACE_DATA"),
        ("sqlite:///x.db", "sqlite:///x.db", "PostgreSQL only"),
        (APP_URL, "not a url", "must both be PostgreSQL URLs"),
        (APP_URL, "postgresql+psycopg://owner@db.example:5432/other", "db.example:5432/coldtrace"),
        (APP_URL, "postgresql+psycopg://coldtrace:pw@db.example:5432/coldtrace", "owner role"),
    ],
)
def test_migration_database_url_names_the_owner_of_the_same_database(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str | None,
    migration_url: str,
    says: str,
) -> None:
    if database_url is not None:
        monkeypatch.setenv("COLDTRACE_DATABASE_URL", database_url)
    monkeypatch.setenv("COLDTRACE_MIGRATION_DATABASE_URL", migration_url)
    with pytest.raises(ConfigError) as info:
        load_settings(run_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("COLDTRACE_MIGRATION_DATABASE_URL") and says in message
    assert "app-pw" not in message and "\n" not in message


def test_migrations_run_as_the_owner_and_grant_the_applications_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        load_settings(run_dir=tmp_path).app_role,
        load_settings(run_dir=tmp_path).migration_url,
    ) == (
        None,
        f"sqlite:///{tmp_path.resolve() / 'coldtrace.db'}",
    )
    owner = "postgresql+psycopg://coldtrace_owner:owner-pw@db.example:5432/coldtrace"
    monkeypatch.setenv("COLDTRACE_DATABASE_URL", APP_URL)
    monkeypatch.setenv("COLDTRACE_MIGRATION_DATABASE_URL", owner)
    s = load_settings(run_dir=tmp_path)
    assert (s.sqlalchemy_url, s.migration_url, s.app_role) == (APP_URL, owner, "coldtrace")
    assert "owner-pw" not in repr(s)


def test_the_apis_tls_files_go_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDTRACE_API_TLS_CERTFILE", str(tmp_path / "server.pem"))
    with pytest.raises(ConfigError) as info:
        load_settings(run_dir=tmp_path)
    assert str(info.value) == (
        "COLDTRACE_API_TLS_CERTFILE and COLDTRACE_API_TLS_KEYFILE go together: set both (HTTPS)"
        " or neither"
    )


def test_certificates_are_kept_at_least_a_year(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EU rules ask for temperature records to be kept a year: a shorter retention is refused."""
    assert load_settings(run_dir=tmp_path).certificate_retention_days == 730
    monkeypatch.setenv("COLDTRACE_CERTIFICATE_RETENTION_DAYS", "364")
    with pytest.raises(ConfigError, match=r"^COLDTRACE_CERTIFICATE_RETENTION_DAYS: .*365"):
        load_settings(run_dir=tmp_path)


def test_a_command_needing_no_secrets_reads_them_and_writes_none(tmp_path: Path) -> None:
    """generate_secrets=False (`analyze`, `certificates verify`, `gateway`...): the run dir's
    secrets when it has them, and no run dir made where there is none."""
    assert load_settings(run_dir=tmp_path / "none", generate_secrets=False).mqtt_password is None
    assert not (tmp_path / "none").exists()

    made = load_settings(run_dir=tmp_path / "run").mqtt_password
    read = load_settings(run_dir=tmp_path / "run", generate_secrets=False).mqtt_password

    assert made is not None and read is not None
    assert read.get_secret_value() == made.get_secret_value()


def test_a_run_dir_that_cannot_be_made_is_named_by_its_setting(tmp_path: Path) -> None:
    """It was a NotADirectoryError (PermissionError, in a service whose directory is `/`)
    traceback from every command."""
    (tmp_path / "file").write_text("")

    with pytest.raises(ConfigError) as info:
        load_settings(run_dir=tmp_path / "file" / "run")

    assert str(info.value) == (
        f"COLDTRACE_RUN_DIR: cannot write the development secrets to {tmp_path}/file/run/"
        "secrets.env (Not a directory): run from a directory you can write to, or set "
        "COLDTRACE_RUN_DIR to one"
    )
