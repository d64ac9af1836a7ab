"""The settings of outgoing webhooks: private addresses refused unless allowed, a short timeout."""

from __future__ import annotations

import pytest

from chatman.config import SettingsError, load_settings

KEY = "k" * 40


def test_private_addresses_are_refused_by_default_and_a_timeout_is_short():
    settings = load_settings({"SECRET_KEY": KEY})
    assert settings.webhook_allow_private is False and settings.webhook_timeout_s == 10
    allowed = load_settings({"SECRET_KEY": KEY, "WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_TIMEOUT_S": "2.5"})
    assert allowed.webhook_allow_private is True and allowed.webhook_timeout_s == 2.5


@pytest.mark.parametrize(
    ("name", "value"),
    [("WEBHOOK_ALLOW_PRIVATE", "maybe"), ("WEBHOOK_TIMEOUT_S", "0"), ("WEBHOOK_TIMEOUT_S", "120")],
)
def test_bad_webhook_settings_stop_the_start_naming_them(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({"SECRET_KEY": KEY, name: value})
