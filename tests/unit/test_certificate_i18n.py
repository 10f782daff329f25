"""The certificate's words (coldtrace/certificates/i18n.py): every word in every language,
and the shipped profiles' names in the reader's language, a custom profile's as named."""

from __future__ import annotations

import pytest

from coldtrace.certificates.i18n import LANGUAGE_NAMES, LANGUAGES, PROFILE_NAMES, WORDS, Writer
from coldtrace.profiles import load_profiles


def test_every_word_is_in_every_language() -> None:
    assert set(WORDS) == set(LANGUAGES) == set(LANGUAGE_NAMES)
    assert set(WORDS["fr"]) == set(WORDS["en"])


def test_every_shipped_profile_has_its_name_in_every_language() -> None:
    """PROFILE_NAMES["…"]["en"] is profiles.toml's name: renaming a shipped profile there
    without here would leave it untranslated."""
    shipped = load_profiles()
    assert {pid: names["en"] for pid, names in PROFILE_NAMES.items()} == {
        pid: p.name for pid, p in shipped.items()
    }
    assert all(set(names) == set(LANGUAGES) for names in PROFILE_NAMES.values())


@pytest.mark.parametrize(
    ("language", "profile_id", "name", "shown"),
    [
        ("fr", "chilled", "Chilled food", "Denrées réfrigérées"),
        ("en", "chilled", "Chilled food", "Chilled food"),
        ("fr", "pharma", "Pharmaceutical, refrigerated", "Produits pharmaceutiques réfrigérés"),
        # A user profiles file replacing a shipped id with its own name: the user's words.
        ("fr", "chilled", "Frais traiteur (2..4 °C)", "Frais traiteur (2..4 °C)"),
        # A custom profile: as configured, in any language.
        ("fr", "ice-cream", "Ice cream", "Ice cream"),
    ],
)
def test_a_profile_is_named_in_the_readers_language_when_shipped(
    language: str, profile_id: str, name: str, shown: str
) -> None:
    assert Writer(language, "UTC").profile(profile_id, name) == shown
