"""Railyard: release pipelines for feature flags."""

from pathlib import Path
from typing import Any

from flask import Flask

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

    from webapp import cli, errors, input_guard, metrics, templating
    from webapp.views import register_blueprints

    register_blueprints(app)
    errors.register(app)
    input_guard.register(app)
    templating.register(app)
    cli.register(app)
    metrics.register(app)
    return app


def _configure(app: Flask, config: dict[str, Any] | None) -> None:
    from webapp import config as settings

    instance = Path(app.instance_path)
    if config and "INSTANCE_PATH" in config:
        instance = Path(config["INSTANCE_PATH"])
        app.instance_path = str(instance)
    app.config.from_mapping(settings.from_environment(instance))
    if config:
        app.config.from_mapping(config)


def _init_extensions(app: Flask) -> None:
    from webapp.database import tune_sqlite
    from webapp.extensions import csrf, db, htmx, login, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    htmx.init_app(app)
    login.init_app(app)
    login.login_view = "auth.login"
    login.login_message = "Please sign in to continue."

    import webapp.models  # noqa: F401  (registers the tables)

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            tune_sqlite(db.engine)

    from webapp.services import users

    login.user_loader(users.load_user)
