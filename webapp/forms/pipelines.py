"""Forms of the pipeline screens. The builder's stage and action forms only read the posted
text; the rules (and their messages) live in `webapp.services.pipelines`."""

from typing import Any

from flask_wtf import FlaskForm
from markupsafe import Markup
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


class BuilderState:
    """What the builder's forms show after a refused edit: the posted text and the errors of
    the one form (by key: "stage-3", "action-7", "new-action-3", "new-stage", "details") that
    was refused. Plain methods rather than template macros: the builder renders hundreds of
    fields, and a Jinja macro call per field costs more than the rest of the request."""

    def __init__(self, errors: dict[str, dict[str, list[str]]] | None = None,
                 submitted: dict[str, dict[str, str]] | None = None):
        self.errors = errors or {}
        self.submitted = submitted or {}

    def has_errors(self, key: str) -> bool:
        return key in self.errors

    def value(self, key: str, name: str, default: Any) -> Any:
        posted = self.submitted.get(key)
        if posted is not None and name in posted:
            return posted[name]
        return "" if default is None else default

    def invalid(self, key: str, name: str) -> Markup:
        if name in self.errors.get(key, {}):
            return Markup(f'aria-invalid="true" aria-describedby="{key}-{name}-error"')
        return Markup("")

    def error(self, key: str, name: str) -> Markup:
        messages = self.errors.get(key, {}).get(name)
        if not messages:
            return Markup("")
        return Markup('<p class="error" id="{}-{}-error">{}</p>').format(
            key, name, " ".join(messages))
