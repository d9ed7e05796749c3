"""Site administration forms."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import Optional


class UserForm(FlaskForm):
    # The rules (email shape, uniqueness, password length) live in webapp.services.platform.users.
    email = StringField("Email", validators=[Optional()])
    name = StringField("Name", validators=[Optional()])
    password = PasswordField(
        "Password", validators=[Optional()], description="At least 8 characters."
    )
    site_admin = BooleanField("Site administrator")
