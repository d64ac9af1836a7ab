"""Settings read from the environment, with defaults that run out of the box."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

# Where bin/run keeps what this install made for itself: the SQLite file, the secret key.
SECRET_FILE = "secret_key"
# What bin/run last ran with, so `flask` commands run beside it (simulator say, reports, ...)
# reach the same server, database and Redis with nothing exported. The environment and .env
# come first.
RUN_FILE = "run.env"
RUN_SETTINGS = ("PUBLIC_BASE_URL", "DATABASE_URL", "REDIS_URL")
# Values that were ever printed in docs or code as examples: a key anyone can read is no key.
PUBLIC_SECRETS = frozenset(
    {"dev-insecure-change-me", "change-me", "changeme", "secret", "dev", "development", "test", "testing"}
)
MIN_SECRET_LENGTH = 32


class SettingsError(ValueError):
    """A setting has a value the application cannot run with."""


def instance_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("CHATMAN_INSTANCE_DIR") or Path.cwd() / "instance").resolve()


def _default_database_url(environ: Mapping[str, str] | None = None) -> str:
    return f"sqlite:///{instance_dir(environ) / 'chatman.db'}"


def ensure_instance_secret() -> Path | None:
    """bin/run, on first run: unless SECRET_KEY is set (environment or .env), create this
    install's secret key file, random and readable by its owner only. Returns its path."""
    _load_dotenv()
    if os.environ.get("SECRET_KEY"):
        return None
    path = instance_dir() / SECRET_FILE
    if not path.exists() or not path.read_text().strip():  # missing, or left empty by a crash
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
    return path


def record_run_settings() -> tuple[str, str, str]:
    """bin/run: where to listen (HOST, PORT, from the environment or .env) and the address
    webhooks are called on, which follows them unless PUBLIC_BASE_URL is set; that address and
    the database and Redis given go to instance/run.env. Returns (address, host, port)."""
    _load_dotenv()
    host, port = os.environ.get("HOST") or "127.0.0.1", os.environ.get("PORT") or "5000"
    public = os.environ.get("PUBLIC_BASE_URL")
    if not public:
        callback = "127.0.0.1" if host in ("0.0.0.0", "::", "*") else host  # listening everywhere
        public = f"http://{f'[{callback}]' if ':' in callback else callback}:{port}"
    values = {name: os.environ.get(name) for name in RUN_SETTINGS} | {"PUBLIC_BASE_URL": public}
    path = instance_dir() / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only, as a DATABASE_URL may carry a password.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            "# Written by bin/run on each start: what it runs with (flask commands read it).\n"
            + "".join(f"{name}={value}\n" for name, value in values.items() if value)
        )
    return public.rstrip("/"), host, port


def _load_dotenv() -> None:
    """The project folder's .env (the working directory's), under what the environment sets."""
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True), override=False)


def _run_settings() -> dict[str, str]:
    from dotenv import dotenv_values

    path = instance_dir() / RUN_FILE
    if not path.exists():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if k in RUN_SETTINGS and v}


def check_secret_key(value: str | None) -> None:
    """Refuse a missing, short or publicly known secret key: it signs the simulator's webhooks
    (and the admin UI's sessions), so whoever knows it can speak for the provider."""
    hint = (
        "bin/run creates one in instance/secret_key on first run; elsewhere set SECRET_KEY to a "
        "long random value, e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    )
    if not value:
        raise SettingsError(f"SECRET_KEY is not set: {hint}")
    if value.strip().lower() in PUBLIC_SECRETS:
        raise SettingsError(f"SECRET_KEY is a value published as an example, which anyone can know: {hint}")
    if len(value) < MIN_SECRET_LENGTH:
        raise SettingsError(f"SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters: {hint}")


def normalise_database_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain postgres URLs (as Heroku-style hosts give them)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# A send batch may run for 600 s (jobs.BATCH_TIMEOUT_S); a claim younger than that is alive.
MIN_STALE_CLAIM_S = 660.0
# WhatsApp's messaging-limit tiers: unique contacts a sender may start conversations with per
# rolling 24 hours (None: unlimited).
DAILY_LIMIT_TIERS = (250, 2000, 10_000, 100_000, None)
# Standard Webhooks asks receivers to answer within 15-30 s; a claim on a delivery lasts a few
# timeouts, so a longer one would hold deliveries for minutes after a worker dies.
MAX_WEBHOOK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SimulatorSettings:
    """How the simulated network behaves (SIMULATOR_* settings)."""

    delay_s: float = 1.0  # typical time between two callbacks of one message
    failure_rate: float = 0.03
    read_rate: float = 0.6
    duplicate_rate: float = 0.05
    disorder_rate: float = 0.05
    callbacks: bool = True


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str = "redis://127.0.0.1:6379/0"
    # No default: see check_secret_key.
    secret_key: str | None = None
    public_base_url: str = "http://127.0.0.1:5000"
    default_region: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_whatsapp_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base_url: str = "https://api.twilio.com"
    clock_interval_s: float = 5.0
    # Messages per second per sender (WhatsApp's default is 80); 0 lifts the limit.
    sender_rate_per_s: float = 80.0
    import_batch_size: int = 1000
    import_max_new_attributes: int = 50
    # A recurring occurrence missed while the clock was down still runs if it is this young.
    recurring_catch_up_s: float = 3600.0
    # How often drip and date campaigns look for new members of their segments.
    enroll_sync_s: float = 60.0
    # At most this many marketing messages per contact per calendar day on their clock
    # ("day") or per rolling 24 hours ("24h"); 0: no cap. MARKETING_CAP=1/day.
    marketing_cap: int = 0
    marketing_cap_period: str = "day"
    max_attributes: int = 500
    # Requests in flight per send batch (the provider's round trip divides throughput by it).
    send_concurrency: int = 32
    # A claim older than this belongs to a dead batch; the clock recovers its rows.
    stale_claim_s: float = 900.0
    # The sender's messaging-limit tier; launch warns when a campaign would exceed it.
    sender_daily_limit: int | None = 250
    # Meta delivers no marketing templates to US (+1) numbers: skip them rather than pay for failures.
    skip_us_marketing: bool = True
    simulator: SimulatorSettings = SimulatorSettings()
    # Behind a reverse proxy that sets X-Forwarded-Proto/Host: believe them (only then).
    trust_proxy_headers: bool = False
    # Inbound words (compared as the trigger matcher compares text) that opt a contact out / in.
    opt_out_keywords: tuple[str, ...] = ("STOP", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
    opt_in_keywords: tuple[str, ...] = ("START", "UNSTOP")
    # The payload of a template's "Stop promotions" quick-reply button.
    opt_out_payload: str | None = "OPT_OUT"
    opt_out_confirmation: str = (
        "You have been unsubscribed and will get no more messages from us. Reply START to subscribe again."
    )
    opt_in_confirmation: str = "You are subscribed again. Reply STOP at any time to unsubscribe."
    # The answer to a message that reads like an opt-out without saying it clearly.
    opt_out_prompt: str = "Reply STOP to stop all messages."
    # The answer to "send me offers again" from a contact who opted out: only START lifts it.
    opt_in_prompt: str = "Reply START to get our messages again."
    # An inbound message this long after a campaign message counts as a reply to it.
    reply_window_h: float = 72.0
    # The status drain's job timeout; a drain hands over to a fresh job after a third of it.
    drain_timeout_s: float = 60.0
    # Outgoing webhooks: how long a CRM may take to connect and to answer, and whether an
    # endpoint may point inside this network (loopback, private, link-local), which is refused
    # by default so that no marketer can make the server call its own neighbours.
    webhook_timeout_s: float = 10.0
    webhook_allow_private: bool = False
    # Links in campaign messages go out as short tracked links (PUBLIC_BASE_URL/r/<token>) that
    # count clicks; off: they go as written (with utm_campaign).
    track_links: bool = True
    # Status callbacks already applied are deleted after this many days (reports read the
    # counters, not them); 0 keeps them for ever.
    event_retention_days: int = 90

    def __post_init__(self) -> None:
        check_secret_key(self.secret_key)

    @property
    def webhook_auth_token(self) -> str:
        """The key webhooks are signed with: Twilio's auth token, or for the simulator (no
        Twilio account) the secret key."""
        return self.twilio_auth_token or self.secret_key


def _marketing_cap(raw: str | None) -> tuple[int, str]:
    """MARKETING_CAP: "N/day" (a calendar day on the contact's clock) or "N/24h" (rolling);
    unset, "0" or "off": no cap."""
    if raw is None or raw.strip().lower() in ("", "0", "off"):
        return 0, Settings.marketing_cap_period
    count, _, period = raw.strip().lower().partition("/")
    if not count.isdigit() or int(count) < 1 or period not in ("day", "24h"):
        raise SettingsError(
            f"MARKETING_CAP={raw!r}: write how many marketing messages a contact may get and per what, "
            'as "1/day" (a calendar day in the contact\'s timezone) or "2/24h" (any 24 hours), or "off"'
        )
    return int(count), period


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from `environ` (default: the process environment, after `.env`)."""
    if environ is None:
        _load_dotenv()
        environ = _run_settings() | dict(os.environ)

    def get(name: str) -> str | None:
        value = environ.get(name)
        return value if value not in (None, "") else None

    region = get("DEFAULT_REGION")
    if region is not None:
        region = region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise SettingsError(
                f"DEFAULT_REGION={region!r} is not a known ISO 3166 region code (e.g. IN, US, GB)"
            )

    def number(name: str, default: float, cast: type = float) -> float:
        raw = get(name)
        if raw is None:
            return default
        try:
            return cast(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number") from None

    def flag(name: str, default: bool) -> bool:
        raw = get(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={raw!r} is not true or false")

    def words(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = get(name)
        if raw is None:
            return default
        listed = tuple(w.strip() for w in raw.split(",") if w.strip())
        if not listed:
            raise SettingsError(f"{name} lists no words (comma-separated, e.g. STOP,UNSUBSCRIBE)")
        return listed

    def rate(name: str, default: float) -> float:
        value = number(name, default)
        if not 0 <= value <= 1:
            raise SettingsError(f"{name}={value} is not a fraction between 0 and 1")
        return value

    limit_raw = (get("SENDER_DAILY_LIMIT") or "250").replace(",", "").replace("_", "").lower()
    daily_limit = None if limit_raw == "unlimited" else int(limit_raw) if limit_raw.isdigit() else -1
    if daily_limit not in DAILY_LIMIT_TIERS:
        raise SettingsError(
            f"SENDER_DAILY_LIMIT={get('SENDER_DAILY_LIMIT')!r} is not a WhatsApp tier: "
            "250, 2000, 10000, 100000 or unlimited"
        )
    secret_key = get("SECRET_KEY")
    if secret_key is None:
        secret_file = instance_dir(environ) / SECRET_FILE
        if secret_file.exists():
            secret_key = secret_file.read_text().strip()
    check_secret_key(secret_key)
    drain_timeout_s = number("DRAIN_TIMEOUT_S", Settings.drain_timeout_s)
    if drain_timeout_s < 3:
        raise SettingsError(f"DRAIN_TIMEOUT_S={drain_timeout_s:g} is too short for a drain; use 3 or more")
    stale_claim_s = number("STALE_CLAIM_S", Settings.stale_claim_s)
    if stale_claim_s < MIN_STALE_CLAIM_S:
        raise SettingsError(
            f"STALE_CLAIM_S={stale_claim_s:g} is shorter than a send batch may run; "
            f"use {MIN_STALE_CLAIM_S:g} or more"
        )
    concurrency = int(number("SEND_CONCURRENCY", Settings.send_concurrency, int))
    if concurrency < 1:
        raise SettingsError(f"SEND_CONCURRENCY={concurrency} must be at least 1")
    cap, cap_period = _marketing_cap(get("MARKETING_CAP"))
    webhook_timeout_s = number("WEBHOOK_TIMEOUT_S", Settings.webhook_timeout_s)
    if not 0 < webhook_timeout_s <= MAX_WEBHOOK_TIMEOUT_S:
        raise SettingsError(
            f"WEBHOOK_TIMEOUT_S={webhook_timeout_s:g} is out of range: more than 0, "
            f"at most {MAX_WEBHOOK_TIMEOUT_S:g} seconds"
        )
    retention_days = int(number("EVENT_RETENTION_DAYS", Settings.event_retention_days, int))
    if retention_days < 0:
        raise SettingsError(f"EVENT_RETENTION_DAYS={retention_days} must be 0 (keep for ever) or more")

    return Settings(
        database_url=normalise_database_url(get("DATABASE_URL") or _default_database_url(environ)),
        redis_url=get("REDIS_URL") or Settings.redis_url,
        secret_key=secret_key,
        public_base_url=(get("PUBLIC_BASE_URL") or Settings.public_base_url).rstrip("/"),
        default_region=region,
        twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
        twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
        twilio_whatsapp_from=get("TWILIO_WHATSAPP_FROM"),
        twilio_messaging_service_sid=get("TWILIO_MESSAGING_SERVICE_SID"),
        twilio_api_base_url=(get("TWILIO_API_BASE_URL") or Settings.twilio_api_base_url).rstrip("/"),
        clock_interval_s=number("CLOCK_INTERVAL_S", Settings.clock_interval_s),
        sender_rate_per_s=number("SENDER_RATE_PER_S", Settings.sender_rate_per_s),
        import_batch_size=int(number("IMPORT_BATCH_SIZE", Settings.import_batch_size, int)),
        import_max_new_attributes=int(
            number("IMPORT_MAX_NEW_ATTRIBUTES", Settings.import_max_new_attributes, int)
        ),
        max_attributes=int(number("MAX_ATTRIBUTES", Settings.max_attributes, int)),
        recurring_catch_up_s=number("RECURRING_CATCH_UP_S", Settings.recurring_catch_up_s),
        enroll_sync_s=number("ENROLL_SYNC_S", Settings.enroll_sync_s),
        marketing_cap=cap,
        marketing_cap_period=cap_period,
        send_concurrency=concurrency,
        stale_claim_s=stale_claim_s,
        sender_daily_limit=daily_limit,
        skip_us_marketing=flag("SKIP_US_MARKETING", Settings.skip_us_marketing),
        trust_proxy_headers=flag("TRUST_PROXY_HEADERS", Settings.trust_proxy_headers),
        opt_out_keywords=words("OPT_OUT_KEYWORDS", Settings.opt_out_keywords),
        opt_in_keywords=words("OPT_IN_KEYWORDS", Settings.opt_in_keywords),
        opt_out_payload=get("OPT_OUT_PAYLOAD") or Settings.opt_out_payload,
        opt_out_confirmation=get("OPT_OUT_CONFIRMATION") or Settings.opt_out_confirmation,
        opt_in_confirmation=get("OPT_IN_CONFIRMATION") or Settings.opt_in_confirmation,
        opt_out_prompt=get("OPT_OUT_PROMPT") or Settings.opt_out_prompt,
        opt_in_prompt=get("OPT_IN_PROMPT") or Settings.opt_in_prompt,
        reply_window_h=number("REPLY_WINDOW_H", Settings.reply_window_h),
        drain_timeout_s=drain_timeout_s,
        webhook_timeout_s=webhook_timeout_s,
        webhook_allow_private=flag("WEBHOOK_ALLOW_PRIVATE", Settings.webhook_allow_private),
        track_links=flag("TRACK_LINKS", Settings.track_links),
        event_retention_days=retention_days,
        simulator=SimulatorSettings(
            delay_s=number("SIMULATOR_DELAY_S", SimulatorSettings.delay_s),
            failure_rate=rate("SIMULATOR_FAILURE_RATE", SimulatorSettings.failure_rate),
            read_rate=rate("SIMULATOR_READ_RATE", SimulatorSettings.read_rate),
            duplicate_rate=rate("SIMULATOR_DUPLICATE_RATE", SimulatorSettings.duplicate_rate),
            disorder_rate=rate("SIMULATOR_DISORDER_RATE", SimulatorSettings.disorder_rate),
            callbacks=flag("SIMULATOR_CALLBACKS", SimulatorSettings.callbacks),
        ),
    )
