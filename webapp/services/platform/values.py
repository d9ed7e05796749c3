"""Flag values: parsing text input into the feature's value type, and showing values as text."""

from typing import Any

from webapp.services.errors import Invalid

MAX_STRING_VALUE = 20_000


def parse(value_type: str, raw: Any, field: str = "value") -> Any:
    """Turn user input (text or JSON) into a value of `value_type`; raise Invalid when it does
    not fit.

    An empty input means "no value" (None) for every type.
    """
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    if value_type == "none":
        raise Invalid("This flag is on/off only; it takes no value.",
                      {field: ["This flag takes no value."]})
    if value_type == "string":
        text = raw if isinstance(raw, str) else str(raw)
        if len(text) > MAX_STRING_VALUE:
            raise Invalid("Value too long.", {field: [f"At most {MAX_STRING_VALUE} characters."]})
        return text
    if value_type == "integer":
        if isinstance(raw, bool):
            raise Invalid("Not a whole number.", {field: ["Enter a whole number, like 42."]})
        if isinstance(raw, int):
            return raw
        try:
            return int(str(raw).strip())
        except ValueError:
            raise Invalid("Not a whole number.",
                          {field: ["Enter a whole number, like 42."]}) from None
    if value_type == "boolean":
        if isinstance(raw, bool):
            return raw
        lowered = str(raw).strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise Invalid("Not true or false.", {field: ["Enter true or false."]})
    raise Invalid(f"Unknown value type {value_type!r}.", {field: ["Unknown value type."]})


def show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def value_fits(value_type: str, value: Any) -> bool:
    """Whether a stored action value has the flag's type (None always fits: "no value")."""
    if value is None:
        return True
    if value_type == "string":
        return isinstance(value, str)
    if value_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if value_type == "boolean":
        return isinstance(value, bool)
    return False


def parse_priority(raw: Any, errors: dict[str, list[str]]) -> int | None:
    """An override's priority as typed (blank: none); a problem goes into `errors`."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        number = int(str(raw).strip())
    except ValueError:
        number = -1
    if number < 0 or number > 1_000_000:
        errors["priority"] = ["Enter a whole number, 0 or more (lower wins)."]
        return None
    return number


def parse_override(value_type: str, raw_value: Any, raw_priority: Any) -> tuple[Any, int | None]:
    """An override's value and priority as typed; Invalid ("Check the override.") naming each
    field that does not fit."""
    errors: dict[str, list[str]] = {}
    value = None
    try:
        value = parse(value_type, raw_value)
    except Invalid as error:
        errors.update(error.field_errors)
    priority = parse_priority(raw_priority, errors)
    if errors:
        raise Invalid("Check the override.", errors)
    return value, priority
