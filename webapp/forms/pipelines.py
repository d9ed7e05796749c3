"""Forms of the pipeline screens. The builder's stage and action forms only read the posted
text; the rules (and their messages) live in `webapp.services.pipelines`."""

from typing import Any

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional


class PipelineForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="A name is required."),
                                           Length(max=255, message="At most 255 characters.")])
    description = TextAreaField("Description", validators=[Optional()])


class CloneForm(FlaskForm):
    name = StringField("Name of the copy",
                       validators=[Optional(), Length(max=255, message="At most 255 characters.")])


class _Reader(FlaskForm):
    """Reads posted fields; CSRF is checked for every POST by CSRFProtect already."""

    class Meta:
        csrf = False

    version = HiddenField()

    def submitted(self) -> dict[str, Any]:
        """The posted fields, without the version; fields not posted are left out."""
        return {
            name: field.data for name, field in self._fields.items()
            if name != "version" and field.raw_data
        }


class StageForm(_Reader):
    name = StringField()
    environment_id = StringField()
    trigger_type = StringField()
    wait_amount = StringField()
    wait_unit = StringField()


class ActionForm(_Reader):
    action_type = StringField()
    enabled = StringField()
    value = StringField()
    segment_id = StringField()
    rollout_initial = StringField()
    rollout_step = StringField()
    rollout_every = StringField()
    rollout_unit = StringField()


class MoveForm(_Reader):
    direction = StringField()


class VersionForm(_Reader):
    pass
