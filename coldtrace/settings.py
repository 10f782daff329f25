"""The one settings object, built once at start-up by the CLI and passed down.

Every field reads from the environment with the ``COLDTRACE_`` prefix. Secrets have no
default: in development the commands that use the local services generate them into
``<run_dir>/secrets.env`` (load_settings), which is read as a fallback; in production they
must be set.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import (
    AwareDatetime,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from coldtrace import signing
from coldtrace.broker_accounts import BrokerFiles
from coldtrace.contract import MAX_BATCH_BYTES
from coldtrace.smtp import SmtpRelay

ENV_PREFIX = "COLDTRACE_"


class ConfigError(Exception):
    """Bad configuration; the message names the setting and says what to do."""


# The broker account of ingest in deploy/mosquitto/acl (its alert publisher: "ingest-alerts").
INGEST_ACCOUNT = "ingest"
# Its read-only observers' account.
MONITOR_ACCOUNT = "monitor"


def known_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows (zoneinfo, tzdata)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    run_dir: Path = Path("run")

    mqtt_host: str = Field("127.0.0.1", min_length=1)
    mqtt_port: int = Field(1883, ge=1, le=65535)
    # The development broker's TLS listener (certificates from coldtrace/tls.py).
    mqtt_tls_port: int = Field(8883, ge=1, le=65535)
    # The one where a client certificate signed by that CA is the login (its CN the username).
    mqtt_mtls_port: int = Field(8884, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    # The broker's account files that `coldtrace devices` and the API's /devices routes change
    # (its password_file and acl_file), and its pid file, signalled to reload them. Development:
    # the development broker's, in <run_dir>/mosquitto/. Production: both files are required
    # by those commands; without a pid file the broker reloads by itself (docs/security.md).
    mqtt_passwd_file: Path | None = None
    mqtt_acl_file: Path | None = None
    mqtt_broker_pidfile: Path | None = None
    # How long the broker keeps ingest's session (and queues its messages) while it is away.
    mqtt_session_expiry_s: int = Field(7 * 24 * 3600, ge=60)

    influx_url: str = Field("http://127.0.0.1:8086", pattern=r"^https?://[^/\s]+/?$")
    influx_database: str = Field("coldtrace", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    influx_username: str | None = None
    influx_password: SecretStr | None = None

    database_url: str | None = None
    # PostgreSQL with separate roles (docs/deploy.md): DATABASE_URL names the application's
    # role, which owns nothing; this names the owner role of the same database, used by the
    # migrations alone (`coldtrace db upgrade`), which then grant the application its rights.
    migration_database_url: SecretStr | None = None
    # The local PostgreSQL that `coldtrace services up postgresql` runs (development, tests).
    postgres_port: int = Field(5432, ge=1, le=65535)

    api_host: str = Field("127.0.0.1", min_length=1)
    api_port: int = Field(8000, ge=1, le=65535)
    # HTTPS served by the API itself (PEM files; both or neither), with HSTS on every answer.
    # Else terminate TLS in front of it (docs/security.md "TLS").
    api_tls_certfile: Path | None = None
    api_tls_keyfile: Path | None = None
    # Deliveries: a vehicle is at a pickup or drop-off within this radius; it has stopped
    # when slower than stop_speed_kmh for stop_min_dwell_s; a delivered delivery closes once
    # its logger's final readings arrived or after the grace period.
    geofence_radius_m: float = Field(300.0, gt=0)
    stop_speed_kmh: float = Field(3.0, ge=0)
    stop_min_dwell_s: float = Field(120.0, gt=0)
    close_grace_s: int = Field(6 * 3600, ge=0)
    # How often the API detects starts and ends from GPS and closes deliveries (0: never).
    delivery_sweep_s: float = Field(60.0, ge=0)

    # Certificates are signed with this Ed25519 private key (PEM, or base64 of its 32 raw
    # bytes); the API publishes its public key. No default: generated in development.
    certificate_signing_key: SecretStr | None = None
    _certificate_key: Ed25519PrivateKey | None = PrivateAttr(None)
    # The public keys (PEM blocks one after another) of earlier signing keys whose
    # certificates this installation still vouches for: they verify (API, public page) after
    # a rotation. Never a compromised key's: its certificates must read invalid.
    certificate_retired_public_keys: str = ""
    _retired_keys: list[Ed25519PublicKey] = PrivateAttr(default_factory=list)
    # Where people reach the API: the verification address printed on a certificate and in
    # its QR code is <public_url>/v/<public_id> (docs/certificates.md).
    public_url: str = Field("http://127.0.0.1:8000", pattern=r"^https?://[^/?#]+(/[^?#]*)?$")
    # Requests per minute one client address may make to the public verification page.
    public_rate_per_min: int = Field(30, ge=1)
    # Certificates (every version) and their deliveries are kept at least this long after
    # the newest version was issued; deletion before is refused. At least a year: what EU
    # rules ask for temperature records (Regulation (EC) No 37/2005, quick-frozen food).
    certificate_retention_days: int = Field(730, ge=365)
    # Certificates are e-mailed to their customer's contact addresses when this is set.
    certificate_smtp_host: str | None = None
    certificate_smtp_port: int = Field(25, ge=1, le=65535)
    certificate_smtp_starttls: bool = False
    certificate_smtp_username: str | None = None
    certificate_smtp_password: SecretStr | None = None
    certificate_smtp_from: str | None = None
    # Failed sends are retried with exponential backoff (2 s doubling) up to this delay.
    certificate_mail_retry_max_s: float = Field(3600.0, gt=0)
    # How often the API's mailer looks at the outbox for what is due.
    certificate_mail_poll_s: float = Field(5.0, gt=0)
    # What a certificate says of who issues it (docs/certificates.md "The document"): the
    # company, its address (lines separated by newlines) and logo (PNG or SVG file), the
    # printed name of the signer (21 CFR 11.50), and the language and time zone of customers
    # that have none of their own.
    certificate_issuer_name: str = Field("coldtrace", min_length=1, max_length=200)
    certificate_issuer_address: str = Field("", max_length=500)
    certificate_issuer_logo: Path | None = None
    certificate_signer_name: str = Field(
        "coldtrace automated certification", min_length=1, max_length=200
    )
    certificate_language: Literal["en", "fr"] = "en"
    certificate_timezone: str = Field("UTC", min_length=1)

    # Upper bound on un-acked messages the broker may push to ingest (MQTT 5 Receive Maximum):
    # this is the backpressure that keeps ingest's memory bounded.
    ingest_max_inflight: int = Field(1000, ge=1, le=65535)
    # A write to InfluxDB happens when this many messages are waiting, or after the delay.
    ingest_batch_messages: int = Field(500, ge=1, le=65535)
    ingest_batch_delay_ms: int = Field(100, ge=1, le=60_000)
    # The contract's largest batch by default: a contract-valid batch is never oversize.
    ingest_max_payload_bytes: int = Field(MAX_BATCH_BYTES, ge=1024)
    # How far ahead of the server's receive time a device (or derived) time may be: a clock
    # read as 2099 is dead-lettered as clock_ahead, never stored in the future (s).
    ingest_max_clock_ahead_s: int = Field(300, ge=0)
    ingest_dedup_window_h: int = Field(24, ge=1)
    ingest_health_port: int = Field(8081, ge=0, le=65535)
    # Loopback by default; a container serves it to its network (the API asks it).
    ingest_health_host: str = Field("127.0.0.1", min_length=1)
    # Where the API asks ingest's /health, to show the pipeline's state (rules stage
    # quarantines) in its own /health and fleet view; unset: the API does not report on it.
    ingest_health_url: str | None = Field(None, pattern=r"^https?://[^/\s]+/?$")
    # How often ingest writes its own state (measurement `ingest`: lag, rules stage) and
    # logs its totals.
    ingest_heartbeat_s: float = Field(10.0, gt=0)
    # /health fails once InfluxDB has refused to take writes for this long.
    ingest_unhealthy_after_s: float = Field(60.0, gt=0)

    # The Grafana users open (docs/deploy.md): the API's deliveries link to its Delivery
    # dashboard (dashboards/); unset: no link.
    grafana_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")

    # Development only: simulated devices derive their broker passwords from this key.
    dev_device_key: SecretStr | None = None

    # Alerts (rules on device time). The rules stage runs inside ingest for every device that
    # has a profile: alerts_device_profiles (JSON object device -> profile id), else the
    # default profile; no default = rules off for unmapped devices.
    alerts_default_profile: str | None = None
    alerts_device_profiles: dict[str, str] = Field(default_factory=dict)
    # Configured suppression windows (defrost, loading) per device, as a JSON object
    # device -> [[start, end], ...] of ISO 8601 times with offsets: temperature breaches
    # (excursion, cumulative, MKT) inside are recorded, not alarmed (unless critical).
    alerts_suppress_windows: dict[str, list[tuple[AwareDatetime, AwareDatetime]]] = Field(
        default_factory=dict
    )
    alerts_profiles_file: Path | None = None  # user profiles, added to the shipped ones
    # How far back late readings are still merged and re-evaluated (device time).
    alerts_late_horizon_h: float = Field(48.0, gt=0)
    # A breach known this long after its device time is flagged detected_late.
    alerts_late_after_s: float = Field(300.0, gt=0)
    # A device with a profile, on a delivery in transit, that sent nothing for this long is
    # silent (device_silent).
    alerts_silent_after_s: float = Field(900.0, gt=0)
    # Batches of readings the rules stage may hold before ingest stops handing it any (the
    # readings are then re-read from InfluxDB: ingest never waits on the rules).
    alerts_queue_batches: int = Field(1000, ge=1)
    # Notifiers: each is on when its target is set. The webhook body is signed with
    # HMAC-SHA256 of the secret (header X-Coldtrace-Signature); the secret has no default.
    notify_webhook_url: str | None = Field(None, pattern=r"^https?://")
    notify_webhook_secret: SecretStr | None = None
    notify_mqtt: bool = False  # publish to coldtrace/v1/alerts/<device> with ingest's account
    notify_smtp_host: str | None = None
    notify_smtp_port: int = Field(25, ge=1, le=65535)
    notify_smtp_starttls: bool = False
    notify_smtp_username: str | None = None
    notify_smtp_password: SecretStr | None = None
    notify_smtp_from: str | None = None
    notify_smtp_to: str | None = None  # comma-separated addresses
    # Failed notifications are retried with exponential backoff up to this delay.
    notify_retry_max_s: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _notifiers_complete(self) -> Settings:
        if self.notify_webhook_url and self.notify_webhook_secret is None:
            raise ValueError(
                f"{ENV_PREFIX}NOTIFY_WEBHOOK_SECRET is required when "
                f"{ENV_PREFIX}NOTIFY_WEBHOOK_URL is set (the receiver checks the signature)"
            )
        if self.certificate_smtp_host and not self.certificate_smtp_from:
            raise ValueError(
                f"{ENV_PREFIX}CERTIFICATE_SMTP_FROM is required when "
                f"{ENV_PREFIX}CERTIFICATE_SMTP_HOST is set"
            )
        if self.notify_smtp_host:
            for name in ("notify_smtp_from", "notify_smtp_to"):
                if not getattr(self, name):
                    raise ValueError(
                        f"{ENV_PREFIX}{name.upper()} is required when "
                        f"{ENV_PREFIX}NOTIFY_SMTP_HOST is set"
                    )
        return self

    @property
    def mqtt_client_id(self) -> str:
        """Ingest's MQTT client id, and so its session: its username, as the broker makes it
        anyway (use_username_as_clientid in deploy/mosquitto/)."""
        return self.mqtt_username or INGEST_ACCOUNT

    @property
    def mqtt_alerts_username(self) -> str:
        """The broker account ingest publishes alerts with (alerts/notify.py): an account of
        its own, since one account is one client id, one connection."""
        return f"{self.mqtt_client_id}-alerts"

    @property
    def broker_files(self) -> BrokerFiles:
        """The broker's account files (see mqtt_passwd_file); ConfigError in production when
        they are not set."""
        broker_dir = self.run_dir.resolve() / "mosquitto"
        dev = self.env == "development"
        passwd = self.mqtt_passwd_file or (broker_dir / "passwd" if dev else None)
        acl = self.mqtt_acl_file or (broker_dir / "acl" if dev else None)
        if passwd is None or acl is None:
            raise ConfigError(
                f"{ENV_PREFIX}MQTT_PASSWD_FILE and {ENV_PREFIX}MQTT_ACL_FILE must be set: device "
                "accounts are written to the broker's password and ACL files (docs/security.md)"
            )
        pidfile = self.mqtt_broker_pidfile or (broker_dir / "mosquitto.pid" if dev else None)
        return BrokerFiles(passwd, acl, pidfile)

    @property
    def broker_own_accounts(self) -> frozenset[str]:
        """The accounts of deploy/mosquitto/acl that are not devices: no device takes their
        names."""
        return frozenset({self.mqtt_client_id, self.mqtt_alerts_username, MONITOR_ACCOUNT})

    @model_validator(mode="after")
    def _migration_role_of_the_same_database(self) -> Settings:
        if self.migration_database_url is None:
            return self
        name = f"{ENV_PREFIX}MIGRATION_DATABASE_URL"
        if self.database_url is None:
            raise ValueError(
                f"{name} needs {ENV_PREFIX}DATABASE_URL too, naming the application's role on "
                "the same database (docs/deploy.md)"
            )
        try:
            owner = make_url(self.migration_database_url.get_secret_value())
            app = make_url(self.database_url)
        except ArgumentError:
            raise ValueError(
                f"{name} and {ENV_PREFIX}DATABASE_URL must both be PostgreSQL URLs "
                "(postgresql+psycopg://ROLE:PASSWORD@HOST:PORT/DATABASE)"
            ) from None
        if owner.get_backend_name() != "postgresql" or app.get_backend_name() != "postgresql":
            raise ValueError(
                f"{name} is for PostgreSQL only, with {ENV_PREFIX}DATABASE_URL on the same "
                "database (a SQLite file has no roles): unset it"
            )
        if (owner.host, owner.port, owner.database) != (app.host, app.port, app.database):
            raise ValueError(
                f"{name} must name the database of {ENV_PREFIX}DATABASE_URL "
                f"({app.host}:{app.port}/{app.database}), as its owner role"
            )
        if owner.username == app.username:
            raise ValueError(
                f"{name} must name the owner role, not {ENV_PREFIX}DATABASE_URL's "
                f"{app.username!r}: the application's role owns nothing (docs/deploy.md)"
            )
        return self

    @model_validator(mode="after")
    def _database_url_supported(self) -> Settings:
        """SQLite, or PostgreSQL through psycopg (the driver installed): another URL failed
        at the first command that opened the store, with a traceback."""
        if self.database_url is None:
            return self
        usage = "use sqlite:///PATH or postgresql+psycopg://ROLE:PASSWORD@HOST:PORT/DATABASE"
        try:
            url = make_url(self.database_url)
        except ArgumentError:
            raise ValueError(f"{ENV_PREFIX}DATABASE_URL is not a database URL: {usage}") from None
        if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
            shown = url.render_as_string(hide_password=True)
            raise ValueError(f"{ENV_PREFIX}DATABASE_URL={shown!r}: {usage}")
        return self

    @model_validator(mode="after")
    def _profiles_file_exists(self) -> Settings:
        # Checked here so that every command and service names the setting (a missing file
        # was a bare "No such file" error, or a traceback, naming only the path).
        path = self.alerts_profiles_file
        if path is not None and not path.is_file():
            raise ValueError(
                f"{ENV_PREFIX}ALERTS_PROFILES_FILE={str(path)!r}: no such file: give your "
                "profiles' TOML file (the format of coldtrace/profiles.toml) or unset it"
            )
        return self

    @model_validator(mode="after")
    def _api_tls_pair(self) -> Settings:
        if (self.api_tls_certfile is None) != (self.api_tls_keyfile is None):
            raise ValueError(
                f"{ENV_PREFIX}API_TLS_CERTFILE and {ENV_PREFIX}API_TLS_KEYFILE go together: "
                "set both (HTTPS) or neither"
            )
        return self

    @model_validator(mode="after")
    def _certificate_timezone_known(self) -> Settings:
        if not known_timezone(self.certificate_timezone):
            raise ValueError(
                f"{ENV_PREFIX}CERTIFICATE_TIMEZONE={self.certificate_timezone!r} is not an IANA "
                "time zone (e.g. Europe/Paris, UTC)"
            )
        return self

    @model_validator(mode="after")
    def _certificate_key_readable(self) -> Settings:
        # Read once here, and named in the message without echoing the secret.
        if self.certificate_signing_key is not None:
            try:
                self._certificate_key = signing.private_key(
                    self.certificate_signing_key.get_secret_value()
                )
            except ValueError as exc:
                raise ValueError(
                    f"{ENV_PREFIX}CERTIFICATE_SIGNING_KEY is not an Ed25519 private key: {exc} "
                    "(give PEM, e.g. from `openssl genpkey -algorithm ed25519`, or base64 of "
                    "its 32 raw bytes)"
                ) from None
        try:
            self._retired_keys = signing.public_keys(self.certificate_retired_public_keys)
        except ValueError as exc:
            raise ValueError(
                f"{ENV_PREFIX}CERTIFICATE_RETIRED_PUBLIC_KEYS: {exc} (give the retired keys' "
                "public.pem files one after another, as GET /api/v1/certificates/public-key "
                "gave them)"
            ) from None
        return self

    @property
    def mqtt_login(self) -> tuple[str, str]:
        """(username, password) ingest logs in to the broker with; ConfigError when either is
        not set. Only ingest asks: the API and the other commands never need them (the
        certificate signing key likewise: certificate_key)."""
        if self.mqtt_username is None or self.mqtt_password is None:
            raise ConfigError(
                f"{ENV_PREFIX}MQTT_USERNAME and {ENV_PREFIX}MQTT_PASSWORD must be set: ingest "
                "logs in to the broker with them"
            )
        return self.mqtt_username, self.mqtt_password.get_secret_value()

    @property
    def notify_smtp(self) -> SmtpRelay | None:
        """The relay alert e-mails go through (COLDTRACE_NOTIFY_SMTP_*), None: no e-mail."""
        if not self.notify_smtp_host:
            return None
        password = self.notify_smtp_password
        return SmtpRelay(
            self.notify_smtp_host,
            self.notify_smtp_port,
            self.notify_smtp_starttls,
            self.notify_smtp_username,
            None if password is None else password.get_secret_value(),
        )

    @property
    def certificate_smtp(self) -> SmtpRelay | None:
        """The relay certificates are e-mailed through (COLDTRACE_CERTIFICATE_SMTP_*), None:
        certificates are not e-mailed."""
        if not self.certificate_smtp_host:
            return None
        password = self.certificate_smtp_password
        return SmtpRelay(
            self.certificate_smtp_host,
            self.certificate_smtp_port,
            self.certificate_smtp_starttls,
            self.certificate_smtp_username,
            None if password is None else password.get_secret_value(),
        )

    @property
    def certificate_key(self) -> Ed25519PrivateKey:
        """The key certificates are signed with; ConfigError when it is not configured."""
        if self._certificate_key is None:
            raise ConfigError(
                f"{ENV_PREFIX}CERTIFICATE_SIGNING_KEY is not set: certificates cannot be signed"
            )
        return self._certificate_key

    @property
    def certificate_public_keys(self) -> list[Ed25519PublicKey]:
        """The keys a certificate may be signed with to verify here: the signing key's public
        key, then the retired ones (COLDTRACE_CERTIFICATE_RETIRED_PUBLIC_KEYS); ConfigError
        when the signing key is not configured."""
        return [self.certificate_key.public_key(), *self._retired_keys]

    @property
    def sqlalchemy_url(self) -> str:
        """The relational store: COLDTRACE_DATABASE_URL, else (development only) SQLite in the
        run dir. ConfigError in production without it: ingest wrote its breaches, and `keys
        create` its keys, to a new SQLite file that the API on PostgreSQL never read."""
        if self.database_url is not None:
            return self.database_url
        if self.env == "production":
            raise ConfigError(
                f"{ENV_PREFIX}DATABASE_URL must be set in production: the relational store "
                "every command and service shares (postgresql+psycopg://ROLE:PASSWORD@HOST:PORT/"
                "DATABASE, or sqlite:///PATH; docs/deploy.md)"
            )
        return f"sqlite:///{self.run_dir.resolve() / 'coldtrace.db'}"

    @property
    def migration_url(self) -> str:
        """Where the migrations run: the owner role's URL if set, else the store's."""
        if self.migration_database_url is not None:
            return self.migration_database_url.get_secret_value()
        return self.sqlalchemy_url

    @property
    def app_role(self) -> str | None:
        """The application's PostgreSQL role, granted its rights after each migration; None
        when the migrations run as the application (SQLite, or a single role)."""
        if self.migration_database_url is None:
            return None
        return make_url(self.sqlalchemy_url).username

    @property
    def local_postgres_url(self) -> str:
        """The database of the local PostgreSQL started by `coldtrace services`, as the
        application's role (coldtrace.devtools.services creates it and the owner role)."""
        return f"postgresql+psycopg://coldtrace@127.0.0.1:{self.postgres_port}/coldtrace"

    @property
    def local_postgres_owner_url(self) -> str:
        """The same database as its owner role: COLDTRACE_MIGRATION_DATABASE_URL's value."""
        return f"postgresql+psycopg://coldtrace_owner@127.0.0.1:{self.postgres_port}/coldtrace"


def ensure_dev_secrets(run_dir: Path) -> Path:
    """Generate the development secrets once (random, never a shared default)."""
    env_file = run_dir / "secrets.env"
    key_name = f"{ENV_PREFIX}CERTIFICATE_SIGNING_KEY"
    signing_key = f"{key_name}={signing.new_private_key()}\n"
    if not env_file.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        env_file.write_text(
            "# generated by coldtrace for development; never used in production\n"
            f"{ENV_PREFIX}MQTT_USERNAME={INGEST_ACCOUNT}\n"
            f"{ENV_PREFIX}MQTT_PASSWORD={secrets.token_urlsafe(24)}\n"
            f"{ENV_PREFIX}DEV_DEVICE_KEY={secrets.token_urlsafe(24)}\n" + signing_key
        )
        env_file.chmod(0o600)
    elif f"{key_name}=" not in env_file.read_text():
        # A run dir from before certificates were signed gets its key too.
        with env_file.open("a") as f:
            f.write(signing_key)
    return env_file


def load_settings(*, generate_secrets: bool = True, **overrides: object) -> Settings:
    """Build the settings, or raise ConfigError with one line naming the bad setting.

    Development: `<run_dir>/secrets.env` is read as the secrets' fallback, generated first
    when `generate_secrets` (the commands that use the local services). A command that needs
    none (`coldtrace analyze`, `certificates verify`, `gateway`...) passes False: it reads
    the file if there is one and leaves no run dir behind in whatever directory it is run
    from (a systemd service's is `/`). A run dir that cannot be written is a ConfigError
    naming COLDTRACE_RUN_DIR."""
    run_dir = Path(str(overrides.get("run_dir") or os.environ.get(f"{ENV_PREFIX}RUN_DIR", "run")))
    dev = (
        overrides.get("env") or os.environ.get(f"{ENV_PREFIX}ENV", "development")
    ) == "development"
    env_file = run_dir / "secrets.env" if dev else None
    if dev and generate_secrets:
        try:
            ensure_dev_secrets(run_dir)
        except OSError as exc:
            raise ConfigError(
                f"{ENV_PREFIX}RUN_DIR: cannot write the development secrets to {env_file} "
                f"({exc.strerror or exc}): run from a directory you can write to, or set "
                f"{ENV_PREFIX}RUN_DIR to one"
            ) from None
    try:
        return Settings(
            _env_file=env_file,
            **overrides,  # type: ignore[arg-type]
        )
    except SettingsError as exc:  # a complex setting (object, list) that is not JSON
        raise ConfigError(_not_json(exc)) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a model-level check; its message already names the setting
            raise ConfigError(err["msg"].removeprefix("Value error, ")) from None
        name = f"{ENV_PREFIX}{str(err['loc'][0]).upper()}"
        raise ConfigError(f"{name}: {err['msg']} (got {err.get('input')!r})") from None


def _not_json(exc: SettingsError) -> str:
    """One line naming the setting whose value is not JSON, what it got and what it wants."""
    found = re.search(r'field "(\w+)"', str(exc))
    if found is None:
        return str(exc)
    field = found.group(1)
    name = f"{ENV_PREFIX}{field.upper()}"
    wants = (
        "a JSON object"
        if str(Settings.model_fields[field].annotation).startswith("dict")
        else "JSON"
    )
    got = os.environ.get(name)
    return (
        f"{name}: not valid JSON ({exc.__cause__ or exc})"
        + (f" (got {got!r})" if got is not None else "")
        + f": give {wants}, see README.md, Configuration"
    )


def port_taken(setting: str, host: str, port: int, exc: OSError) -> ConfigError:
    """The one-line error for a port a server of ours cannot listen on (another process
    holds it, or the host is not this machine's), naming the setting to change."""
    return ConfigError(
        f"{ENV_PREFIX}{setting}: cannot listen on {host}:{port} ({exc.strerror}): stop the "
        "process that holds it, or set another port"
    )
