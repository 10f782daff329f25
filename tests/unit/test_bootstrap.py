"""The composition root checks the configuration once, before anything starts, and names the
setting that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldtrace.bootstrap import checked_profiles
from coldtrace.settings import ConfigError, Settings


def test_the_profiles_the_settings_name_must_exist() -> None:
    known = checked_profiles(Settings(alerts_default_profile="chilled"))
    assert known["chilled"].high_c == 4.0
    with pytest.raises(ConfigError) as exc:
        checked_profiles(Settings(alerts_default_profile="chiled"))
    assert str(exc.value).startswith("COLDTRACE_ALERTS_DEFAULT_PROFILE: unknown profile 'chiled' (")
    with pytest.raises(ConfigError) as exc:
        checked_profiles(Settings(alerts_device_profiles={"van-1": "chilled", "van-2": "x"}))
    assert str(exc.value).startswith("COLDTRACE_ALERTS_DEVICE_PROFILES: unknown profile 'x' (")


def test_a_profiles_file_that_does_not_load_is_named(tmp_path: Path) -> None:
    user = tmp_path / "profiles.toml"
    user.write_text("version = 2\n")
    with pytest.raises(ConfigError) as exc:
        checked_profiles(Settings(alerts_profiles_file=user))
    assert (
        str(exc.value) == f"COLDTRACE_ALERTS_PROFILES_FILE: {user}: needs `version = 1` at the top"
    )
