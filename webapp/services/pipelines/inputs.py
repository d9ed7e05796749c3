"""Parsing what builders type, shared by the dashboard's builder and the API: names, triggers,
durations, values, percentages, actions; and whether a pipeline's values fit a flag.
"""

from typing import Any

from webapp.durations import DAY, HOUR, MINUTE
from webapp.extensions import db
from webapp.models import (
    ACTION_TYPES,
    TRIGGER_TYPES,
    Environment,
    PipelineStage,
    Segment,
    StageAction,
)
from webapp.parsing import ascii_int
from webapp.services.errors import Invalid

MAX_STAGES = 30
MAX_WAIT_SECONDS = 365 * DAY
UNITS = {"minutes": MINUTE, "hours": HOUR, "days": DAY}
# A stage's wait may be any whole number of seconds (Flagsmith's wait_for is a duration; the API
# sends seconds). The builder offers minutes, hours and days, and seconds only for a wait set so.
WAIT_UNITS = {"seconds": 1, **UNITS}
SEGMENT_ACTIONS = ("TOGGLE_FEATURE_FOR_SEGMENT", "UPDATE_FEATURE_VALUE_FOR_SEGMENT")
TOGGLE_ACTIONS = ("TOGGLE_FEATURE", "TOGGLE_FEATURE_FOR_SEGMENT", "PHASED_ROLLOUT")
VALUE_ACTIONS = ("UPDATE_FEATURE_VALUE", "UPDATE_FEATURE_VALUE_FOR_SEGMENT")


def parse_trigger(data: dict[str, Any]) -> tuple[str, int | None]:
    """(trigger_type, wait_seconds) from `trigger_type` (ON_ENTER, the default, or WAIT_FOR with
    `wait_amount` and `wait_unit`). Refuses an unknown trigger and a bad wait (Invalid)."""
    trigger = data.get("trigger_type", "ON_ENTER")
    if trigger not in TRIGGER_TYPES:
        raise Invalid("Unknown trigger.", {"trigger_type": [
            "Choose “When the flag enters this stage” or “Wait”."]})
    if trigger == "ON_ENTER":
        return trigger, None
    return trigger, parse_duration(data.get("wait_amount"), data.get("wait_unit"),
                                   "wait_amount", "wait", units=WAIT_UNITS)


def parse_duration(amount: Any, unit: Any, field: str, what: str = "interval",
                   units: dict[str, int] = UNITS) -> int:
    """A whole number of minutes/hours/days (or another of `units`) as seconds, above 0 and at
    most 365 days."""
    if unit not in units:
        raise Invalid(f"Unknown {what} unit.", {field: ["Choose minutes, hours or days."]})
    text = str(amount if amount is not None else "").strip()
    try:
        number = int(text)
    except ValueError:
        doing = "wait" if what == "wait" else "wait between steps"
        message = (f"Enter the {what} as a whole number of {unit}." if text
                   else f"Enter how many {unit} to {doing}.")
        raise Invalid(f"Bad {what}.", {field: [message]}) from None
    if number <= 0:
        raise Invalid(f"Bad {what}.", {field: [f"The {what} must be more than 0."]})
    seconds = number * units[unit]
    if seconds > MAX_WAIT_SECONDS:
        raise Invalid(f"Bad {what}.", {field: [f"The {what} can be at most 365 days."]})
    return seconds


def parse_value(raw: Any) -> Any:
    """Typed JSON from the value field: true/false → boolean, whole numbers → integer, text in
    double quotes → that text, anything else → text, empty → None (clears the value)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        return raw
    return _parse_value(raw.strip())


def _parse_value(text: str) -> Any:
    if text == "":
        return None
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def _parse_enabled(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    text = str(raw or "").strip().lower()
    if text in ("true", "on", "1", "enable", "enabled"):
        return True
    if text in ("false", "off", "0", "disable", "disabled"):
        return False
    return None


def _parse_percent(raw: Any, field: str, what: str) -> int:
    text = str(raw if raw is not None else "").strip()
    try:
        number = int(text)
    except ValueError:
        raise Invalid("Bad percentage.",
                      {field: [f"Enter the {what} as a whole percentage, 1 to 100."]}) from None
    if not 0 < number <= 100:
        raise Invalid("Bad percentage.",
                      {field: [f"The {what} must be more than 0 % and at most 100 %."]})
    return number


def action_fields(project_id: int, data: dict[str, Any]) -> dict[str, Any]:
    """The action's columns from form text; Invalid lists every bad field at once."""
    kind = data.get("action_type")
    if kind not in ACTION_TYPES:
        raise Invalid("Unknown action.", {"action_type": ["Choose one of the listed actions."]})
    fields: dict[str, Any] = {
        "action_type": kind, "enabled": None, "value": None, "sets_value": False,
        "segment_id": None, "rollout_initial": None, "rollout_step": None,
        "rollout_interval_seconds": None,
    }
    errors: dict[str, list[str]] = {}

    def attempt(key: str, parse) -> None:
        try:
            fields[key] = parse()
        except Invalid as error:
            errors.update(error.field_errors)

    if kind in TOGGLE_ACTIONS:
        enabled = _parse_enabled(data.get("enabled", "true" if kind == "PHASED_ROLLOUT" else None))
        if enabled is None:
            errors["enabled"] = ["Choose enable or disable."]
        fields["enabled"] = enabled
    if kind in SEGMENT_ACTIONS:
        attempt("segment_id", lambda: _segment(project_id, data.get("segment_id")))
    if kind in VALUE_ACTIONS:
        fields["value"], fields["sets_value"] = parse_value(data.get("value")), True
    if kind == "PHASED_ROLLOUT":
        attempt("rollout_initial", lambda: _parse_percent(data.get("rollout_initial"),
                                                          "rollout_initial", "initial percentage"))
        attempt("rollout_step", lambda: _parse_percent(data.get("rollout_step"),
                                                       "rollout_step", "increase"))
        attempt("rollout_interval_seconds", lambda: parse_duration(
            data.get("rollout_every"), data.get("rollout_unit"), "rollout_every", "interval"))
        value = parse_value(data.get("value"))
        if value is not None:
            fields["value"], fields["sets_value"] = value, True
    if errors:
        raise Invalid("The action was not saved.", errors)
    return fields


def _action_problems(action: StageAction, segments: set[int]) -> list[str]:
    """What is wrong with a stored action (publish re-checks everything stored)."""
    kind = action.action_type
    if kind not in ACTION_TYPES:
        return [f"unknown action type {kind!r}."]
    problems = []
    if kind in TOGGLE_ACTIONS and action.enabled is None:
        problems.append("choose enable or disable.")
    if kind in SEGMENT_ACTIONS and action.segment_id not in segments:
        problems.append("choose one of this project's segments.")
    if kind == "PHASED_ROLLOUT":
        for value, what in ((action.rollout_initial, "initial percentage"),
                            (action.rollout_step, "increase")):
            if value is None or not 0 < value <= 100:
                problems.append(f"the {what} must be more than 0 % and at most 100 %.")
        interval = action.rollout_interval_seconds
        if not interval or not 0 < interval <= MAX_WAIT_SECONDS:
            problems.append("the interval must be more than 0 and at most 365 days.")
    return problems


def environment_of(project_id: int, raw: Any) -> Environment | None:
    if raw is None or str(raw).strip() == "":
        return None
    environment = None
    if (number := ascii_int(raw)) is not None:
        environment = db.session.get(Environment, number)
    if environment is None or environment.project_id != project_id:
        raise Invalid("Unknown environment.",
                      {"environment_id": ["Choose one of this project's environments."]})
    return environment


def _segment(project_id: int, raw: Any) -> int:
    text = str(raw if raw is not None else "").strip()
    if not text:
        raise Invalid("Segment required.", {"segment_id": ["Choose a segment."]})
    number = ascii_int(text)
    segment = db.session.get(Segment, number) if number is not None else None
    if segment is None or segment.project_id != project_id or segment.is_system:
        raise Invalid("Unknown segment.",
                      {"segment_id": ["Choose one of this project's segments."]})
    return segment.id


def _refuse_second_rollout(stage: PipelineStage, kind: str, editing: StageAction | None) -> None:
    if kind == "PHASED_ROLLOUT" and any(
        a.action_type == "PHASED_ROLLOUT" and a is not editing for a in stage.actions
    ):
        raise Invalid("One phased rollout per stage.",
                      {"action_type": ["This stage already has a phased rollout "
                                       "(at most one per stage)."]})
