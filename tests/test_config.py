"""Settings from the environment: defaults that run, and clear refusals of bad values."""

from __future__ import annotations

import pytest

from chatman.config import SettingsError, load_settings

KEY = "k" * 40


def test_defaults_run_out_of_the_box():
    settings = load_settings({"SECRET_KEY": KEY})
    assert settings.sender_daily_limit == 250 and settings.skip_us_marketing is True
    assert settings.stale_claim_s == 900 and settings.send_concurrency == 32
    assert settings.simulator.callbacks is True and 0 < settings.simulator.failure_rate < 1


def test_messaging_limit_tiers_and_flags_are_read_as_written():
    settings = load_settings(
        {
            "SECRET_KEY": KEY,
            "SENDER_DAILY_LIMIT": "10,000",
            "SKIP_US_MARKETING": "no",
            "SIMULATOR_READ_RATE": "0.25",
        }
    )
    assert (settings.sender_daily_limit, settings.skip_us_marketing) == (10_000, False)
    assert settings.simulator.read_rate == 0.25
    assert load_settings({"SECRET_KEY": KEY, "SENDER_DAILY_LIMIT": "Unlimited"}).sender_daily_limit is None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SENDER_DAILY_LIMIT", "5000", "not a WhatsApp tier"),
        ("SKIP_US_MARKETING", "maybe", "not true or false"),
        ("SIMULATOR_FAILURE_RATE", "1.5", "between 0 and 1"),
        ("STALE_CLAIM_S", "60", "shorter than a send batch may run"),
        ("SEND_CONCURRENCY", "0", "at least 1"),
        ("SENDER_RATE_PER_S", "fast", "not a number"),
        ("DRAIN_TIMEOUT_S", "1", "too short"),
        ("SECRET_KEY", "dev-insecure-change-me", "published as an example"),
        ("SECRET_KEY", "short-but-random-8f3a", "shorter than 32"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(name, value, says):
    with pytest.raises(SettingsError, match=name) as error:
        load_settings({"SECRET_KEY": KEY, name: value})
    assert says in str(error.value)


def test_without_a_secret_key_nothing_starts(tmp_path):
    """No public default: neither SECRET_KEY nor the install's own key file means no start,
    whether settings come from the environment or are built by hand (create_app)."""
    from chatman import create_app
    from chatman.config import Settings

    with pytest.raises(SettingsError, match="SECRET_KEY is not set"):
        load_settings({"CHATMAN_INSTANCE_DIR": str(tmp_path)})
    for weak in (None, "dev-insecure-change-me"):
        with pytest.raises(SettingsError, match="SECRET_KEY"):
            create_app(Settings(database_url="sqlite://", secret_key=weak))


def test_bin_run_makes_a_random_key_of_its_own_once(tmp_path, monkeypatch):
    from chatman.config import ensure_instance_secret

    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("CHATMAN_INSTANCE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    path = ensure_instance_secret()
    key = path.read_text().strip()
    assert len(key) >= 48 and oct(path.stat().st_mode & 0o777) == "0o600"
    assert ensure_instance_secret().read_text().strip() == key  # kept, not replaced
    assert load_settings({"CHATMAN_INSTANCE_DIR": str(tmp_path)}).secret_key == key
