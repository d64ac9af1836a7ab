"""What a first run shows must be true: the address webhooks are called on follows the port
bin/run serves, commands from a second terminal reach the same server, and a simulated
callback that cannot be delivered is given up on, counted, and shown."""

from __future__ import annotations

import json
import socket

from chatman.config import load_settings, record_run_settings
from chatman.messaging import simulator


def test_the_public_address_follows_port_and_flask_commands_see_what_bin_run_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env of the developer's; instance/ is here
    monkeypatch.delenv("CHATMAN_INSTANCE_DIR", raising=False)
    for name in ("PUBLIC_BASE_URL", "HOST", "DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRET_KEY", "k" * 40)
    monkeypatch.setenv("PORT", "5101")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/3")
    assert record_run_settings() == ("http://127.0.0.1:5101", "127.0.0.1", "5101")
    assert (tmp_path / "instance" / "run.env").stat().st_mode & 0o077 == 0  # it may hold passwords
    # A second terminal: nothing exported but the key.
    monkeypatch.delenv("PORT")
    monkeypatch.delenv("REDIS_URL")
    second = load_settings()
    assert (second.public_base_url, second.redis_url) == ("http://127.0.0.1:5101", "redis://127.0.0.1:6390/3")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://chat.example.com")  # what is exported wins
    assert load_settings().public_base_url == "https://chat.example.com"
    monkeypatch.setenv("HOST", "0.0.0.0")  # listening everywhere: called back on loopback
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.delenv("PUBLIC_BASE_URL")
    assert record_run_settings() == ("http://127.0.0.1:8080", "0.0.0.0", "8080")
    monkeypatch.setenv("HOST", "::1")
    assert record_run_settings()[0] == "http://[::1]:8080"
    # HOST and PORT may come from the project's .env, as the Procfile's processes read it.
    monkeypatch.delenv("HOST")
    monkeypatch.delenv("PORT")
    (tmp_path / ".env").write_text("PORT=5202\n")
    assert record_run_settings() == ("http://127.0.0.1:5202", "127.0.0.1", "5202")
    monkeypatch.delenv("PORT")  # load_dotenv set it in os.environ


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_callback_nobody_takes_is_tried_a_few_times_then_counted_in_healthz(client, redis):
    url = f"http://127.0.0.1:{closed_port()}/webhooks/twilio/status"
    redis.zadd(simulator.CALLBACKS_KEY, {json.dumps({"url": url, "form": {"MessageSid": "SM1"}}): 0})
    now, rounds = 1.0, 0
    while simulator.pending_callbacks(redis):
        assert rounds < 20, "the callback is still being retried"
        simulator.post_due_callbacks(redis, "k" * 40, now=now)
        now, rounds = now + 3600, rounds + 1
    assert rounds == simulator.MAX_POST_ATTEMPTS
    health = client.get("/healthz").json
    assert health["simulator_callbacks_undelivered"] == 1
    assert url in health["simulator_last_error"] and "did not answer" in health["simulator_last_error"]


def test_the_simulator_endpoint_says_when_our_own_webhook_did_not_take_the_message(client, auth):
    # The test app's PUBLIC_BASE_URL (http://testserver) is no server: nothing was received.
    answer = client.post(
        "/api/v1/simulator/messages", headers=auth, json={"phone": "+919820011111", "body": "hi"}
    )
    assert answer.status_code == 502 and "PUBLIC_BASE_URL" in answer.json["message"]


def test_a_fuzzy_trigger_without_a_threshold_gets_one_that_matches_typos_not_mentions(client, auth):
    made = client.post(
        "/api/v1/triggers",
        headers=auth,
        json={
            "name": "order",
            "match_type": "fuzzy",
            "patterns": ["where is my order"],
            "action": "reply",
            "reply_body": "On its way",
        },
    )
    assert made.status_code == 201 and made.json["threshold"] == 80
    for text, matches in [
        ("wher is my ordr", True),
        ("hi, where's my order?", True),
        ("my order was great", False),
    ]:
        found = client.post("/api/v1/triggers/match", headers=auth, json={"text": text}).json
        assert (found["trigger_id"] == made.json["id"]) is matches, (text, found)


def test_an_event_no_campaign_listens_for_says_so(client, auth):
    answer = client.post(
        "/api/v1/events", headers=auth, json={"event": "order_paid", "contact": {"phone": "+919820011112"}}
    )
    assert answer.status_code == 202 and answer.json["campaigns"] == []
    assert "no running triggered or drip campaign listens for 'order_paid'" in answer.json["message"]
