"""Settings from the environment: defaults that run, and clear refusals of bad values."""

from __future__ import annotations

import pytest

from chatman.config import SettingsError, load_settings


def test_defaults_run_out_of_the_box():
    settings = load_settings({})
    assert settings.sender_daily_limit == 250 and settings.skip_us_marketing is True
    assert settings.stale_claim_s == 900 and settings.send_concurrency == 32
    assert settings.simulator.callbacks is True and 0 < settings.simulator.failure_rate < 1


def test_messaging_limit_tiers_and_flags_are_read_as_written():
    settings = load_settings(
        {"SENDER_DAILY_LIMIT": "10,000", "SKIP_US_MARKETING": "no", "SIMULATOR_READ_RATE": "0.25"}
    )
    assert (settings.sender_daily_limit, settings.skip_us_marketing) == (10_000, False)
    assert settings.simulator.read_rate == 0.25
    assert load_settings({"SENDER_DAILY_LIMIT": "Unlimited"}).sender_daily_limit is None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SENDER_DAILY_LIMIT", "5000", "not a WhatsApp tier"),
        ("SKIP_US_MARKETING", "maybe", "not true or false"),
        ("SIMULATOR_FAILURE_RATE", "1.5", "between 0 and 1"),
        ("STALE_CLAIM_S", "60", "shorter than a send batch may run"),
        ("SEND_CONCURRENCY", "0", "at least 1"),
        ("SENDER_RATE_PER_S", "fast", "not a number"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(name, value, says):
    with pytest.raises(SettingsError, match=name) as error:
        load_settings({name: value})
    assert says in str(error.value)
