"""Forms of the release calendar (project settings and the organisation's admin page):
an environment's deployment window, a freeze, stopping and lifting the line.

The forms check what a person typed (a time, a date, a zone the picker offers) so the message
sits beside the field; the calendar's service holds the rules about what may be set.
"""

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import (
    Field,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    ValidationError,
)
from wtforms.fields.choices import Choice, SelectChoice
from wtforms.validators import InputRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget, Select, html_params

from webapp.services.pages.calendar_words import COMMON_ZONES, DAY_NAMES, is_zone, zone_names
from webapp.services.runs import calendar

REASON_MAX = 500


class CheckboxesField(SelectMultipleField):
    """Choices as a list of checkboxes, each with its own label; anything else checked reads
    `invalid` beside them."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def __init__(self, *args: Any, invalid: str = "Choose from the list.", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invalid = invalid

    def process_formdata(self, valuelist: list[str]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data: list[Any] = []
            raise ValueError(self.invalid) from None

    def pre_validate(self, form: FlaskForm) -> None:
        offered = {choice.value for choice in self.choices or []}
        if any(value not in offered for value in self.data or []):
            raise ValidationError(self.invalid)


def _clock(closing: bool) -> Callable[[FlaskForm, Field], None]:
    """HH:MM as the browser's time input sends it (seconds dropped); 24:00 closes at midnight.
    The calendar's own parser decides what is a time of day."""

    def check(form: FlaskForm, field: Field) -> None:
        raw = (field.data or "").strip()[:5]
        try:
            field.minute = calendar.parse_hhmm(raw, closing=closing)
        except ValueError as error:
            raise ValidationError(str(error)) from None

    return check


def _moment(form: FlaskForm, field: Field) -> None:
    """A date and a time of day from <input type=datetime-local> (or a date alone: midnight)."""
    raw = (field.data or "").strip()
    for shape in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            value = datetime.strptime(raw, shape)
        except ValueError:
            continue
        if not 2000 <= value.year <= 2999:
            break
        field.parsed = value
        return
    raise ValidationError("Give a date and a time, e.g. 2030-12-20 00:00.")


def _zone(form: FlaskForm, field: Field) -> None:
    if not calendar.valid_timezone(field.data or ""):
        raise ValidationError("Choose a time zone from the list, e.g. Europe/Berlin.")


def zone_choices() -> list[SelectChoice]:
    """The common zones first, then every zone grouped by region (a select with optgroups:
    typing a name's first letters finds it)."""
    return list(_zone_choices())


@functools.cache
def _zone_choices() -> tuple[SelectChoice, ...]:
    return tuple(SelectChoice(name, name.replace("_", " "),
                              optgroup="Common" if name in COMMON_ZONES else name.split("/")[0])
                 for name in zone_names())


class ZoneSelect(Select):
    """WTForms' select, its ~600 zone options rendered once per selected zone and kept: a
    calendar page shows a zone select per environment, and rendering their options afresh was
    most of the page's time (about 130 ms of 155). The markup is WTForms' own, byte for byte."""

    def __call__(self, field: Field, **kwargs: Any) -> Markup:
        kwargs.setdefault("id", field.id)
        flags = getattr(field, "flags", {})
        for name in self.validation_attrs:
            if name not in kwargs and getattr(flags, name, False):
                kwargs[name] = getattr(flags, name)
        selected = field.data if isinstance(field.data, str) and is_zone(field.data) else None
        return Markup(f"<select {html_params(name=field.name, **kwargs)}>"
                      f"{_zone_options(selected)}</select>")


@functools.lru_cache(maxsize=64)
def _zone_options(selected: str | None) -> str:
    html = []
    groups: dict[str, list[SelectChoice]] = {}
    for choice in _zone_choices():
        groups.setdefault(choice.optgroup or "", []).append(choice)
    for label, choices in groups.items():
        html.append(f"<optgroup {html_params(label=label)}>")
        html.extend(Select.render_option(
            Choice(choice.value, choice.label, choice.value == selected, choice.render_kw))
            for choice in choices)
        html.append("</optgroup>")
    return "".join(html)


class ZoneField(SelectField):
    """A time zone from the list (zone_choices), checked by the calendar's own rule."""

    widget = ZoneSelect()

    def __init__(self, label: str, **kwargs: Any) -> None:
        super().__init__(label, validate_choice=False, validators=[_zone], **kwargs)
        self.choices = zone_choices()


class WindowForm(FlaskForm):
    """One environment's deployment window: the weekdays and hours (in a zone) it is open."""

    weekdays = CheckboxesField("Open on", coerce=int, invalid="Choose days from Monday to Sunday.",
                               choices=[SelectChoice(n, name) for n, name in enumerate(DAY_NAMES)],
                               validators=[InputRequired(message="Choose at least one day.")])
    opens = StringField("Opens at", validators=[_clock(closing=False)],
                        render_kw={"type": "time"})
    closes = StringField("Closes at", validators=[_clock(closing=True)],
                         render_kw={"type": "time"})
    timezone = ZoneField("Time zone")

    def validate_closes(self, field: Field) -> None:
        opens = getattr(self.opens, "minute", None)
        closes = getattr(field, "minute", None)
        if opens is not None and closes is not None and closes <= opens:
            raise ValidationError("Close after it opens (24:00 for midnight).")

    def windows(self) -> list[calendar.Window]:
        """The checked days, each open from `opens` to `closes` (after validation)."""
        return [calendar.Window(day, self.opens.minute, self.closes.minute)
                for day in sorted(set(self.weekdays.data or []))]


class FreezeForm(FlaskForm):
    """A dated freeze: from, until (in a zone), why, and which environments it holds."""

    starts = StringField("From", validators=[_moment], render_kw={"type": "datetime-local"})
    ends = StringField("Until", validators=[_moment], render_kw={"type": "datetime-local"})
    timezone = ZoneField("Time zone")
    reason = StringField("Reason", validators=[
        InputRequired(message="Say why, e.g. Holiday freeze."),
        Length(max=REASON_MAX, message=f"At most {REASON_MAX} characters.")])
    environments = CheckboxesField("Environments", coerce=str,
                                   invalid="Choose environments of this project.")

    def __init__(self, *args: Any, environment_choices: list[tuple[str, str]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environments.choices = [SelectChoice(value, label)
                                     for value, label in environment_choices or []]

    def validate_ends(self, field: Field) -> None:
        starts = getattr(self.starts, "parsed", None)
        ends = getattr(field, "parsed", None)
        if starts is not None and ends is not None and ends <= starts:
            raise ValidationError("End after it starts.")

    def starts_at(self) -> datetime:
        return self._instant(self.starts.parsed)

    def ends_at(self) -> datetime:
        return self._instant(self.ends.parsed)

    def _instant(self, local: datetime) -> datetime:
        return local.replace(tzinfo=ZoneInfo(self.timezone.data or "UTC")).astimezone(UTC)

    def environment_ids(self) -> list[int] | None:
        """The environments checked; None when every one is (the freeze then also covers
        environments added later)."""
        chosen = {int(value) for value in self.environments.data or []}
        offered = {int(choice.value) for choice in self.environments.choices or []}
        return None if chosen >= offered else sorted(chosen)

    def validate_environments(self, field: Field) -> None:
        if self.environments.choices and not field.data:
            raise ValidationError("Choose the environments it freezes.")


class StopForm(FlaskForm):
    """Stop the line: every transition holds until an admin lifts it."""

    reason = TextAreaField("Reason", validators=[
        InputRequired(message="Say why the line stops, e.g. Incident 4711: checkout errors."),
        Length(max=REASON_MAX, message=f"At most {REASON_MAX} characters.")])


class LiftForm(FlaskForm):
    """Lift a freeze or the stop: only the token."""
