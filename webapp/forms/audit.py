"""The audit log's filter form: a GET form whose values live in the URL (shareable views)."""

from datetime import UTC, datetime, timedelta

from flask_wtf import FlaskForm
from wtforms import Field, SelectField
from wtforms.validators import Length, Optional, Regexp, ValidationError
from wtforms.widgets import DateTimeLocalInput

from webapp.services.governance import audit_wording
from webapp.services.governance.audit_log import AuditFilter, FilterChoices


class ProjectObjectField(SelectField):
    """A select of the project's objects by id; anything else (text, another project's id) is
    refused with `message`, never looked up."""

    def __init__(self, label: str, message: str, **kwargs):
        super().__init__(label, coerce=str, **kwargs)
        self.message = message
        self.id_data: int | None = None

    def process_formdata(self, valuelist):
        self.data = valuelist[0] if valuelist else ""

    def pre_validate(self, form):
        self.id_data = None
        if not self.data:
            return
        allowed = {str(value) for value, _label in self.choices if value != ""}
        if self.data not in allowed:
            raise ValidationError(self.message)
        self.id_data = int(self.data)


class UTCMinuteField(Field):
    """A UTC time typed as 2025-03-31T14:30 (what datetime-local sends) or a day 2025-03-31.

    `data` is the start of that minute or day; `span` its length, so "to" can include it."""

    widget = DateTimeLocalInput()
    _FORMATS = (("%Y-%m-%dT%H:%M", timedelta(minutes=1)), ("%Y-%m-%d %H:%M", timedelta(minutes=1)),
                ("%Y-%m-%dT%H:%M:%S", timedelta(seconds=1)), ("%Y-%m-%d", timedelta(days=1)))

    def __init__(self, label: str, **kwargs):
        super().__init__(label, **kwargs)
        self.span = timedelta(0)
        self.raw = ""

    def process_formdata(self, valuelist):
        self.raw = (valuelist[0] if valuelist else "").strip()
        self.data = None
        if not self.raw:
            return
        for pattern, span in self._FORMATS:
            try:
                self.data = datetime.strptime(self.raw, pattern).replace(tzinfo=UTC)
            except ValueError:
                continue
            self.span = span
            return
        raise ValueError("Not a date and time: use 2025-03-31 or 2025-03-31T14:30 (UTC).")

    def _value(self):
        if self.data is not None:
            return self.data.strftime("%Y-%m-%dT%H:%M")
        return self.raw


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET form that changes nothing

    event_type = SelectField("Event type", validate_choice=False, validators=[
        Optional(), Regexp(r"^[A-Za-z0-9_.:-]{1,64}$", message="Not an event type.")])
    pipeline = ProjectObjectField("Pipeline", "Pick a pipeline of this project.")
    flag = ProjectObjectField("Flag", "Pick a flag of this project.")
    environment = ProjectObjectField("Environment", "Pick an environment of this project.")
    actor = SelectField("Actor", validate_choice=False, validators=[Optional(), Length(max=320)])
    since = UTCMinuteField("From (UTC)")
    until = UTCMinuteField("To (UTC)")

    def offer(self, choices: FilterChoices) -> "AuditFilterForm":
        """Fill the selects with what the project's log holds; keep a shared URL's value shown."""
        events = _with_current(choices.event_types, self.event_type.data)
        self.event_type.choices = [("", "Any event")] + sorted(
            ((value, audit_wording.label(value)) for value, _ in events),
            key=lambda choice: choice[1].lower())
        self.actor.choices = [("", "Anyone")] + _with_current(choices.actors, self.actor.data)
        self.pipeline.choices = [("", "Any pipeline")] + [(str(i), n) for i, n in choices.pipelines]
        self.flag.choices = [("", "Any flag")] + [(str(i), n) for i, n in choices.features]
        self.environment.choices = [("", "Any environment")] + [
            (str(i), n) for i, n in choices.environments]
        return self

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        if valid and self.since.data and self.until.data and self.until.data < self.since.data:
            self.until.errors.append("Must not be before From.")
            valid = False
        return valid

    def filters(self) -> AuditFilter:
        return AuditFilter(
            event_type=self.event_type.data or None,
            pipeline_id=self.pipeline.id_data,
            feature_id=self.flag.id_data,
            environment_id=self.environment.id_data,
            actor=self.actor.data or None,
            since=self.since.data,
            until=self.until.data + self.until.span if self.until.data else None,
        )

    def query_args(self) -> dict[str, str]:
        """The non-empty filter values, as they go in a URL's query string."""
        args = {name: self[name].data for name in
                ("event_type", "pipeline", "flag", "environment", "actor") if self[name].data}
        for name in ("since", "until"):
            if self[name].raw:
                args[name] = self[name].raw
        return args


def _with_current(values: list[str], current: str | None) -> list[tuple[str, str]]:
    if current and current not in values:
        values = [*values, current]
    return [(value, value) for value in values]
