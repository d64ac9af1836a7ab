"""Signing in to the admin: Flask-Login sessions, a failed-login limit, a `next` that stays on
this site, cookies and headers that keep the pages to themselves."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request
from flask_login import LoginManager, UserMixin

from chatman.auth.models import User
from chatman.extensions import redis_client, request_session

# Five wrong passwords for one address, or twenty from one client, within the window lock
# that address (or client) out until the window has passed since the first of them.
FAILURES_PER_EMAIL = 5
FAILURES_PER_CLIENT = 20
FAILURE_WINDOW_S = 15 * 60
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

login_manager = LoginManager()
login_manager.login_view = "admin.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.session_protection = "strong"


class AdminUser(UserMixin):
    def __init__(self, user: User) -> None:
        self.id = user.id
        self.email = user.email

    def get_id(self) -> str:
        return str(self.id)


@login_manager.user_loader
def _load_user(user_id: str) -> AdminUser | None:
    if not user_id.isdigit():
        return None
    user = request_session().get(User, int(user_id))
    return AdminUser(user) if user is not None and user.is_active else None


def safe_next(target: str | None, default: str) -> str:
    """`target` when it is a path on this site, else `default`: no redirect elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin"):
        return default
    return target


def _keys(email: str) -> list[tuple[str, int]]:
    client = request.remote_addr or "unknown"
    return [
        (f"chatman:admin:login-failures:email:{email.strip().lower()}", FAILURES_PER_EMAIL),
        (f"chatman:admin:login-failures:client:{client}", FAILURES_PER_CLIENT),
    ]


def locked_for_s(email: str) -> int:
    """Seconds until this address and client may try again; 0 when they may now."""
    connection = redis_client()
    waits = [connection.ttl(key) for key, limit in _keys(email) if int(connection.get(key) or 0) >= limit]
    return max([w for w in waits if w > 0], default=0)


def count_failure(email: str) -> None:
    pipe = redis_client().pipeline()
    for key, _ in _keys(email):
        pipe.incr(key)
        pipe.expire(key, FAILURE_WINDOW_S, nx=True)
    pipe.execute()


def forget_failures(email: str) -> None:
    redis_client().delete(*(key for key, _ in _keys(email)))


def secure_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.blueprint == "admin":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_security(app: Flask, secure_cookies: bool) -> None:
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure_cookies,
        # Only the admin checks tokens (in its own before_request); the API has bearer tokens
        # and the webhooks providers' signatures.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_SSL_STRICT=True,
    )
    login_manager.init_app(app)
