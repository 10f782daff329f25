"""Provisioning a sensor box over its USB serial REPL: the firmware files (with the vendored
MQTT client of firmware/lib) and its ``config.json``, written with mpremote used as a library
(its raw-REPL transport and file operations), and read back.

A box's flash after provisioning: the firmware's modules at the root, ``lib/umqtt/simple.py``
and ``lib/ussl.py``, ``config.json`` and, for TLS, ``ca.der`` (the broker's CA). Its data
(``data/``: outbox, counters) is left alone, so re-provisioning keeps unsent readings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

# The checkout's firmware (provisioning runs from a checkout, as `make setup` installs it).
FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
CONFIG_FILE = "config.json"
CA_FILE = "ca.der"
# Only what runs on the board: not the README, not the type checker's settings.
_FIRMWARE_GLOBS = ("*.py", "lib/**/*.py")
_VERSION = re.compile(r'^VERSION = "([^"]+)"$', re.MULTILINE)


class ProvisionError(Exception):
    """The board cannot be reached or refused a step; the message says what to do."""


@dataclass(frozen=True)
class BoxConfig:
    """What a box needs to know (firmware/config.py's DEFAULTS has the rest): its device id
    and broker password (`coldtrace devices add`), the broker, and either Wi-Fi or the
    tethered uplink; ``probes``: DS18B20 ROM (hex) -> probe id, empty for every probe found.
    ``ca_der``: the broker's CA certificate for TLS."""

    device: str
    password: str
    broker_host: str | None
    broker_port: int = 1883
    wifi_ssid: str | None = None
    wifi_password: str | None = None
    tethered: bool = False
    ca_der: bytes | None = None
    probes: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The box's ``config.json``."""
        cfg: dict[str, Any] = {"device": self.device, "probes": self.probes}
        if self.tethered:
            cfg["uplink"] = "uart"  # the gateway publishes for it with its own account
            return cfg
        cfg["wifi"] = {"ssid": self.wifi_ssid, "password": self.wifi_password}
        cfg["mqtt"] = {
            "host": self.broker_host,
            "port": self.broker_port,
            "password": self.password,
            "tls": self.ca_der is not None,
            "ca_file": CA_FILE if self.ca_der is not None else None,
        }
        return cfg


def ca_der(path: Path) -> bytes:
    """A CA certificate file, PEM or DER, as the DER the firmware's TLS wants."""
    data = path.read_bytes()
    try:
        cert = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        raise ProvisionError(f"{path} is not a certificate (PEM or DER)") from None
    return cert.public_bytes(Encoding.DER)


def firmware_files(firmware: Path = FIRMWARE_DIR) -> dict[str, bytes]:
    """The files a box runs, by path on its flash."""
    files = {
        p.relative_to(firmware).as_posix(): p.read_bytes()
        for pattern in _FIRMWARE_GLOBS
        for p in sorted(firmware.glob(pattern))
    }
    if "main.py" not in files:
        raise ProvisionError(f"{firmware} holds no firmware (no main.py): give --firmware")
    return files


def firmware_version(files: dict[str, bytes]) -> str | None:
    """``VERSION`` of firmware/version.py in these files."""
    found = _VERSION.search(files.get("version.py", b"").decode())
    return found.group(1) if found else None


class Board:
    """A box's REPL on a serial port, in raw-REPL mode while open. ``soft_reset``: reset the
    interpreter on entry, as mpremote does (a real board; the unix port has no soft reset).
    Ctrl-C first stops the running firmware; after, the box runs it again at its next reset."""

    def __init__(self, port: str, soft_reset: bool = True, baudrate: int = 115200) -> None:
        try:
            self.transport = SerialTransport(port, baudrate=baudrate)
        except TransportError as exc:
            raise ProvisionError(f"cannot open {port}: {exc}; is the box plugged in?") from None
        try:
            self.transport.enter_raw_repl(soft_reset=soft_reset)
        except TransportError as exc:
            self.transport.close()
            raise ProvisionError(
                f"{port} answers, but not as a MicroPython REPL ({exc}): flash MicroPython "
                "first (firmware/README.md)"
            ) from None

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.transport.exit_raw_repl()
        self.transport.close()

    def write(self, files: dict[str, bytes], progress: Callable[[str], None]) -> None:
        """Write the files, making their directories."""
        t = self.transport
        for parent in sorted({str(Path(p).parent) for p in files} - {"."}, key=len):
            for d in _ancestry(parent):
                if not t.fs_exists(d):
                    t.fs_mkdir(d)
        for path, data in files.items():
            progress(path)
            t.fs_writefile(path, data)

    def read(self, path: str) -> bytes | None:
        """A file's content, or None when the box has none."""
        if not self.transport.fs_exists(path):
            return None
        return bytes(self.transport.fs_readfile(path))

    def listing(self) -> list[str]:
        """The files at the root of the flash and in lib/, as paths."""
        t = self.transport
        names = [e.name for e in t.fs_listdir("")]
        lib = [f"lib/{e.name}" for e in t.fs_listdir("lib")] if "lib" in names else []
        return sorted(names + lib)


def _ancestry(path: str) -> Iterator[str]:
    parts = Path(path).parts
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def provision(
    port: str,
    box: BoxConfig,
    firmware: Path = FIRMWARE_DIR,
    soft_reset: bool = True,
    progress: Callable[[str], None] = lambda _: None,
    new_password: Callable[[], str] | None = None,
) -> str | None:
    """Write the firmware and the box's config onto the board at ``port``; returns the
    firmware's version. ``new_password``: issues the box's password (`--rotate`) once the
    board answers, so that a box not plugged in keeps its old one rather than being locked
    out with a new one nobody saw."""
    files = firmware_files(firmware)
    if box.ca_der is not None:
        files[CA_FILE] = box.ca_der
    with Board(port, soft_reset) as board:
        if new_password is not None:
            box = replace(box, password=new_password())
        files[CONFIG_FILE] = json.dumps(box.as_json(), indent=1).encode()
        board.write(files, progress)
    return firmware_version(files)


@dataclass(frozen=True)
class BoxInfo:
    """What a box holds: its config (the broker and Wi-Fi passwords masked), its firmware's
    version (None: no firmware/version.py) and its files."""

    config: dict[str, Any] | None
    version: str | None
    files: list[str]


def info(port: str, soft_reset: bool = True) -> BoxInfo:
    """Read back a box's config and firmware version."""
    with Board(port, soft_reset) as board:
        raw = board.read(CONFIG_FILE)
        version = board.read("version.py")
        files = board.listing()
    config = None
    if raw is not None:
        try:
            config = json.loads(raw)
        except ValueError:
            raise ProvisionError(f"its {CONFIG_FILE} is not JSON: provision it again") from None
    return BoxInfo(
        _masked(config) if isinstance(config, dict) else config,
        firmware_version({"version.py": version or b""}),
        files,
    )


def _masked(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {k: _masked(v) if isinstance(v, dict) else v for k, v in cfg.items()}
    if isinstance(out.get("password"), str) and out["password"]:
        out["password"] = "***"
    return out
