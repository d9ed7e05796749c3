"""Extensions, created unbound; `create_app` binds them."""

from typing import TYPE_CHECKING, cast

from flask import Flask, current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from htmx_flask import Htmx
from werkzeug.local import LocalProxy

from webapp.orm import Base

db = SQLAlchemy(model_class=Base)
if TYPE_CHECKING:  # what db.Model is made from, for the type checker (it cannot see db.Model)
    Model = Base
else:
    Model = db.Model
migrate = Migrate()
csrf = CSRFProtect()
login = LoginManager()
htmx = Htmx()


def app_object() -> Flask:
    """The app behind `current_app`, for what outlives the app context (threads, servers).
    Flask types `current_app` as the app; it is the proxy, which is what this unwraps."""
    return cast("LocalProxy[Flask]", current_app)._get_current_object()
