"""The admin UI for marketers, under /admin: server-rendered pages over the domain functions,
with a little JavaScript of our own and vendored libraries (no CDN, no build step)."""

from __future__ import annotations

from flask import Flask

from chatman.config import Settings


def init_admin(app: Flask, settings: Settings) -> None:
    from chatman.admin import (  # noqa: F401  (each module adds its routes to the blueprint)
        automation,
        campaigns,
        contacts,
        dashboard,
        inbox,
        login,
        message_templates,
        reports,
        segments,
        simulator,
    )
    from chatman.admin.blueprint import assets, bp, csrf
    from chatman.admin.security import init_security

    init_security(app, secure_cookies=settings.public_base_url.startswith("https://"))
    csrf.init_app(app)
    app.register_blueprint(bp)
    app.register_blueprint(assets)
