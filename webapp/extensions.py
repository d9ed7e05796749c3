"""Extensions, created unbound; `create_app` binds them."""

from typing import TYPE_CHECKING

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from htmx_flask import Htmx

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
