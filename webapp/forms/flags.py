"""Forms of the flag screens. Fields and their limits; the rules (value types, pipelines) live in
`webapp.services.platform.flags`."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from webapp.models import VALUE_TYPES

TYPE_LABELS = {"none": "On/off only", "string": "On/off + text value",
               "integer": "On/off + whole number", "boolean": "On/off + true/false"}


class FeatureForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="A name is required."),
                                           Length(max=255, message="At most 255 characters.")])
    description = TextAreaField("Description", validators=[Optional(), Length(max=2000)])
    value_type = SelectField("Type", choices=[SelectChoice(t, TYPE_LABELS[t]) for t in VALUE_TYPES],
                             default="none")
    default_enabled = BooleanField("On by default")
    default_value = StringField("Default value", validators=[Optional()])


class ToggleForm(FlaskForm):
    """The on/off button of one cell: `enabled` is the state asked for (not a flip), so a
    double click or a retried request cannot undo itself."""

    enabled = HiddenField()

    @property
    def wanted(self) -> bool:
        return (self.enabled.data or "").lower() in ("1", "true", "on", "y")


class ValueForm(FlaskForm):
    value = StringField("Value", validators=[Optional()])


class OverrideForm(FlaskForm):
    segment_id = StringField("Segment")
    enabled = BooleanField("On for this segment")
    value = StringField("Value", validators=[Optional()])
    priority = StringField("Priority", validators=[Optional()],
                           description="Lower wins; empty puts it last.")


class DetailsForm(FlaskForm):
    description = TextAreaField("Description", validators=[Optional(), Length(max=2000)])
    tags = StringField("Tags", validators=[Optional()], description="Comma-separated.")


class ConfirmForm(FlaskForm):
    """Just the CSRF token, for confirmations."""
