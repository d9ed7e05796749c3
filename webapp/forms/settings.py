"""Forms of the project settings page (admins): environments and members."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import Optional

ROLE_CHOICES = [("admin", "Admin"), ("editor", "Editor (product manager)"),
                ("viewer", "Viewer (team lead)")]


class NewEnvironmentForm(FlaskForm):
    name = StringField("New environment", validators=[Optional()])


class EnvironmentForm(FlaskForm):
    name = StringField("Name", validators=[Optional()])
    approvals = StringField("Changes need N approvals", validators=[Optional()],
                            description="0: changes apply at once.")


class RotateForm(FlaskForm):
    kind = HiddenField()


class MemberForm(FlaskForm):
    email = StringField("Email of an existing user", validators=[Optional()])
    role = StringField("Role", default="editor")


class RoleForm(FlaskForm):
    role = StringField("Role")
