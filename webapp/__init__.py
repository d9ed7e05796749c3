"""Railyard: release pipelines for feature flags."""

import os
from pathlib import Path
from typing import Any

from flask import Flask

from webapp import config as settings

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    _configure(app, config)
    _init_extensions(app)

    # Imported here, not at the top: importing the package (any `webapp.x`, e.g. from jobs or
    # gunicorn's config) must not pull in every view and service; only building an app does.
    from webapp import (
        cli,
        compression,
        database,
        errors,
        input_guard,
        metrics,
        sdk_fast,
        security,
        templating,
    )
    from webapp.views import register_blueprints
    from webapp.views.api import cors

    input_guard.install_converters(app)
    register_blueprints(app)
    database.retry_views(app)
    errors.register(app)
    input_guard.register(app)
    templating.register(app)
    security.register(app)
    compression.register(app)
    cli.register(app)
    metrics.register(app)
    sdk_fast.install(app, cors.SDK_ANSWER)  # last: the outermost WSGI layer
    return app


def _configure(app: Flask, config: dict[str, Any] | None) -> None:
    instance = Path(app.instance_path)
    # Where SQLite, the secret key and the embedded Redis' socket live: a second instance of
    # `make run` gets its own with INSTANCE_PATH=... (tests pass it in the mapping).
    chosen = (config or {}).get("INSTANCE_PATH") or os.environ.get("INSTANCE_PATH")
    if chosen:
        instance = Path(chosen).absolute()
        app.instance_path = str(instance)
    app.config.from_mapping(settings.from_environment(instance))
    if config:
        app.config.from_mapping(config)


def _init_extensions(app: Flask) -> None:
    # Here, not at the top, as in create_app: importing a light module of the package
    # (webapp.clock, webapp.config) must not load Flask-SQLAlchemy, Alembic and the models.
    from webapp.database import install_session_hooks, tune_postgres, tune_sqlite
    from webapp.extensions import csrf, db, htmx, login, migrate
    from webapp.sessions import SessionInterface

    app.session_interface = SessionInterface()
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    htmx.init_app(app)
    login.init_app(app)
    login.login_view = "auth.login"
    login.login_message = "Please sign in to continue."

    import webapp.models  # noqa: F401  (registers the tables; here for the same cost)

    install_session_hooks()

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            tune_sqlite(db.engine)
        elif db.engine.dialect.name == "postgresql":
            tune_postgres(db.engine)

    from webapp.services.platform import realtime, users  # the services: same cost

    login.user_loader(users.load_user)
    realtime.register()  # committed environment changes are published to the stream server
