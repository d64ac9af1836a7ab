"""Chatman: self-hosted conversational WhatsApp campaigns."""

from __future__ import annotations

from flask import Flask

from chatman.config import Settings, load_settings


def create_app(settings: Settings | None = None) -> Flask:
    from chatman import cli, health
    from chatman.admin import init_admin
    from chatman.api import init_api
    from chatman.extensions import init_extensions
    from chatman.webhooks import links as link_redirects
    from chatman.webhooks import twilio as twilio_webhooks

    settings = settings or load_settings()
    app = Flask(__name__, instance_relative_config=False)
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=512 * 1024 * 1024)
    if settings.trust_proxy_headers:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)
    init_extensions(app, settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(twilio_webhooks.bp)
    app.register_blueprint(link_redirects.bp)
    init_api(app)
    init_admin(app, settings)
    cli.init_cli(app)
    return app
