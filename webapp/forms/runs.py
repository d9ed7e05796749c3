"""Forms for flags in pipelines: add one flag (flag page), add several (pipeline page)."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, SelectMultipleField
from wtforms.validators import DataRequired, InputRequired


class AddToPipelineForm(FlaskForm):
    pipeline_id = SelectField("Release pipeline", coerce=int, validators=[InputRequired()])


class AddFlagsForm(FlaskForm):
    # Not checked against a list of choices: the bulk add reports every flag that cannot join
    # (already in a pipeline since the page was drawn, a type that does not fit) by name.
    feature_ids = SelectMultipleField("Flags to add", coerce=int, validate_choice=False,
                                      validators=[DataRequired(
                                          message="Choose at least one flag.")])


class RunActionForm(FlaskForm):
    """Pause, resume, advance, retry, and the confirmed remove / roll back: just the token and
    which panel to answer with."""

    panel = HiddenField(default="flag")
