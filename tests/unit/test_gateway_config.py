"""The gateway's configuration file: the shipped example loads; a mistake is one line naming
the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
gateway = "gw-1"
spool = "/tmp/spool.db"
[broker]
password_file = "/etc/pw"
"""


def test_the_shipped_example_loads() -> None:
    cfg = load(REPO / "deploy" / "gateway" / "gateway.toml")
    assert cfg.devices() == ["van-12-box", "van-12-reefer"]
    assert [(p.name, p.kind, p.line_limit) for p in cfg.ports] == [
        ("box", "box", 256 * 1024),
        ("gnss", "gnss", 128),
        ("reefer", "logger", 1024),
    ]


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ('[[ports]]\nname = "b"\nkind = "box"\npath = "/dev/x"\n', "a box port needs `carries`"),
        (
            '[[ports]]\nname = "l"\nkind = "logger"\npath = "/dev/x"\ndevice = "r"\n'
            'probes = { air = 1 }\ntimezone = "Mars/Olympus"\n',
            "unknown timezone 'Mars/Olympus'",
        ),
        ('[[ports]]\nname = "g"\nkind = "gps"\npath = "/dev/x"\n', "ports.0.kind"),
        (
            '[[ports]]\nname = "b"\nkind = "box"\npath = "/a"\ncarries = ["x"]\n'
            '[[ports]]\nname = "c"\nkind = "box"\npath = "/b"\ncarries = ["x"]\n',
            "a device is carried by two ports",
        ),
    ],
)
def test_mistakes_name_the_field(tmp_path: Path, ports: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL + ports)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("gateway = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load(path)
