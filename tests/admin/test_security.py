"""The admin's doors: a login on every route, CSRF on every change, escaped data, a
failed-login limit, no open redirect, cookies and headers that keep the pages to themselves."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select

from chatman import create_app
from chatman.admin.security import FAILURES_PER_EMAIL
from chatman.contacts.models import Segment
from tests.admin.conftest import ADMIN_PASSWORD, csrf_of
from tests.factories import make_contact

XSS = "<img src=x onerror=alert(1)>"


def _example_url(rule) -> str:
    values = {}
    for name, converter in rule._converters.items():
        kind = type(converter).__name__
        values[name] = (
            1 if kind == "IntegerConverter" else sorted(converter.items)[0] if kind == "AnyConverter" else "x"
        )
    return rule.build(values)[1]


def admin_rules(app):
    return [
        r for r in app.url_map.iter_rules() if r.rule.startswith("/admin") and r.endpoint != "admin.login"
    ]


def test_every_admin_route_sends_an_anonymous_visitor_to_the_login_page(app, client, redis):
    rules = admin_rules(app)
    assert len(rules) > 30  # the walk covers every screen, not a handful
    for rule in rules:
        url = _example_url(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            answer = client.open(url, method=method)
            assert answer.status_code == 302, (method, url, answer.status_code)
            assert answer.headers["Location"].startswith("/admin/login?next="), (method, url)


def test_a_form_post_without_its_csrf_token_is_refused_and_saves_nothing(admin, session):
    form = {"name": "Pune", "kind": "dynamic", "rules": '{"all": [{"field": "name", "op": "exists"}]}'}
    refused = admin.post("/admin/segments/new", data=form)
    assert refused.status_code == 400
    assert "expired" in refused.get_data(as_text=True)
    assert refused.mimetype == "text/html"
    assert session.scalar(select(func.count()).select_from(Segment)) == 0
    # the same post with its token goes through: the refusal was the missing token
    assert admin.post("/admin/segments/new", data={**form, "csrf_token": admin.csrf}).status_code == 302
    assert session.scalar(select(func.count()).select_from(Segment)) == 1


def test_a_script_request_needs_the_csrf_header(admin):
    body = {"rules": {"all": [{"field": "name", "op": "exists"}]}}
    assert admin.post("/admin/segments/preview", json=body).status_code == 400
    answer = admin.post("/admin/segments/preview", json=body, headers={"X-CSRFToken": admin.csrf})
    assert answer.status_code == 200 and answer.json["count"] == 0


def test_a_profile_name_that_is_html_is_shown_as_text(admin, session):
    contact = make_contact(session, name=XSS)
    session.commit()
    for url in (f"/admin/contacts/{contact.id}", "/admin/contacts", f"/admin/contacts?q={contact.phone}"):
        html = admin.get(url).get_data(as_text=True)
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, url
        assert XSS not in html, url


def _login(client, email, password, next_=None):
    page = client.get("/admin/login").get_data(as_text=True)
    url = "/admin/login" + (f"?next={next_}" if next_ else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": csrf_of(page)})


def test_too_many_failed_logins_are_slowed_down(app, admin_user, redis):
    client = app.test_client()
    email = admin_user[0]
    for _ in range(FAILURES_PER_EMAIL):
        assert _login(client, email, "wrong password!").status_code == 401
    locked = _login(client, email, ADMIN_PASSWORD)  # even the right password waits
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    redis.flushdb()  # the window passed
    assert _login(client, email, ADMIN_PASSWORD).status_code == 302


def test_a_successful_login_clears_the_failures(app, admin_user, redis):
    client = app.test_client()
    for _ in range(FAILURES_PER_EMAIL - 1):
        _login(client, admin_user[0], "wrong password!")
    assert _login(client, admin_user[0], ADMIN_PASSWORD).status_code == 302
    client.post("/admin/logout", data={"csrf_token": csrf_of(client.get("/admin/").get_data(as_text=True))})
    assert _login(client, admin_user[0], "wrong password!").status_code == 401  # counted from zero again


@pytest.mark.parametrize(
    ("next_", "lands_on"),
    [
        ("/admin/contacts", "/admin/contacts"),
        ("https://evil.example/", "/admin/"),
        ("//evil.example/admin", "/admin/"),
        ("/\\evil.example", "/admin/"),
        ("/api/v1/contacts", "/admin/"),
    ],
)
def test_next_after_login_stays_in_the_admin(app, admin_user, redis, next_, lands_on):
    answer = _login(app.test_client(), *admin_user, next_=next_)
    assert answer.status_code == 302 and answer.headers["Location"] == lands_on


def test_logout_ends_the_session(admin):
    answer = admin.post("/admin/logout", data={"csrf_token": admin.csrf})
    assert answer.headers["Location"] == "/admin/login"
    assert admin.get("/admin/").headers["Location"].startswith("/admin/login")


def test_pages_forbid_inline_script_and_framing(admin):
    answer = admin.get("/admin/")
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Cache-Control"] == "no-store"


def test_session_cookies_are_http_only_same_site_and_secure_over_https(app, redis):
    settings = app.extensions["chatman.settings"]
    served = create_app(replace(settings, public_base_url="https://chatman.example"))
    cookie = (
        served.test_client().get("/admin/login", base_url="https://chatman.example").headers["Set-Cookie"]
    )
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    served.extensions["chatman.db"].dispose()


def test_admin_errors_are_pages_not_json(admin):
    answer = admin.get("/admin/campaigns/987654")
    assert answer.status_code == 404 and answer.mimetype == "text/html"
    assert "not found" in answer.get_data(as_text=True)
    missing = admin.get("/admin/no-such-screen")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
