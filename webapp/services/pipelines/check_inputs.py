"""Health checks as typed by builders (dashboard and API): parsing, limits, problems that stop a
publish, snapshots for the audit log and copies for a cloned stage.
"""

import math
import re
from typing import Any

from webapp.models import PipelineStage
from webapp.models.health import (
    CHECK_KINDS,
    COMPARISONS,
    ON_UNHEALTHY,
    StageHealthCheck,
)
from webapp.orm import fit
from webapp.services.errors import Invalid

MAX_CHECKS = 10
MIN_INTERVAL_SECONDS = 1
MAX_INTERVAL_SECONDS = 3600
MAX_FAILURES_TO_TRIP = 100
MAX_QUERY = 4000
KIND_LABELS = {"PROMETHEUS": "Prometheus query", "ALERT": "Alert"}
ON_UNHEALTHY_LABELS = {"HOLD": "Hold and notify", "ROLL_BACK": "Roll back and notify"}
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
PLACEHOLDERS = ("{{ flag }}", "{{ environment }}")


# --- Parsing a check -----------------------------------------------------------------------------


def check_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A check's columns from form text or JSON: `kind`, `name`, and for PROMETHEUS `query`,
    `comparison`, `threshold`; for ALERT an optional `selector` ("label=value, …" or a mapping);
    both `interval_seconds` and `failures_to_trip`. Raises Invalid with every field's problem."""
    errors: dict[str, list[str]] = {}
    kind = str(data.get("kind") or "").strip().upper()
    if kind not in CHECK_KINDS:
        raise Invalid("Unknown check kind.", {"kind": ["Choose a Prometheus query or an alert."]})
    name = fit(StageHealthCheck.name, str(data.get("name") or "").strip())
    fields: dict[str, Any] = {"kind": kind, "name": name,
                              "query": None, "comparison": None, "threshold": None,
                              "selector": None}
    fields["interval_seconds"] = _whole(data.get("interval_seconds", 30), "interval_seconds",
                                        MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS, errors)
    fields["failures_to_trip"] = _whole(data.get("failures_to_trip", 1), "failures_to_trip", 1,
                                        MAX_FAILURES_TO_TRIP, errors)
    if kind == "PROMETHEUS":
        query = str(data.get("query") or "").strip()
        if not query:
            errors["query"] = ["Enter a PromQL query."]
        elif len(query) > MAX_QUERY:
            errors["query"] = [f"At most {MAX_QUERY} characters."]
        fields["query"] = query
        comparison = str(data.get("comparison") or "").strip()
        if comparison not in COMPARISONS:
            errors["comparison"] = ["Choose one of " + ", ".join(COMPARISONS) + "."]
        fields["comparison"] = comparison
        fields["threshold"] = _number(data.get("threshold"), errors)
    else:
        fields["selector"] = _selector(data.get("selector"), errors)
    if errors:
        raise Invalid("The health check has problems.", errors)
    return fields


def _whole(raw: Any, field: str, low: int, high: int, errors: dict[str, list[str]]) -> int:
    try:
        if isinstance(raw, bool):
            raise ValueError
        number = int(str(raw).strip()) if not isinstance(raw, int) else raw
    except (TypeError, ValueError):
        errors[field] = ["Enter a whole number."]
        return low
    if not low <= number <= high:
        errors[field] = [f"Between {low} and {high}."]
    return number


def _number(raw: Any, errors: dict[str, list[str]]) -> float | None:
    try:
        if isinstance(raw, bool) or raw is None or str(raw).strip() == "":
            raise ValueError
        number = float(str(raw).strip())
    except (TypeError, ValueError):
        errors["threshold"] = ["Enter a number."]
        return None
    if not math.isfinite(number):
        errors["threshold"] = ["Enter a finite number."]
        return None
    return number


def _selector(raw: Any, errors: dict[str, list[str]]) -> dict[str, str] | None:
    if raw is None or raw == "" or raw == {}:
        return None
    pairs: dict[str, str] = {}
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, str):
        items = []
        for part in (p.strip() for p in raw.split(",")):
            if not part:
                continue
            if "=" not in part:
                errors["selector"] = [f"Write each label as name=value ({part!r} has no =)."]
                return None
            name, value = part.split("=", 1)
            items.append((name.strip(), value.strip().strip('"')))
    else:
        errors["selector"] = ["Give labels as name=value pairs."]
        return None
    for name, value in items:
        if not isinstance(name, str) or not _LABEL.match(name) or not isinstance(value, str):
            errors["selector"] = [f"{name!r} is not a label name with a text value."]
            return None
        pairs[name] = value
    return pairs or None


def check_problems(check: StageHealthCheck) -> list[str]:
    """Why a stored check cannot be published (the API and builder parse the same rules)."""
    try:
        check_fields(check_snapshot(check))
    except Invalid as error:
        return [m for ms in error.field_errors.values() for m in ms] or [error.message]
    return []


def check_snapshot(check: StageHealthCheck) -> dict[str, Any]:
    """A check as the API and the audit log show it."""
    snapshot: dict[str, Any] = {"kind": check.kind, "name": check.name,
                                "interval_seconds": check.interval_seconds,
                                "failures_to_trip": check.failures_to_trip}
    if check.kind == "PROMETHEUS":
        snapshot.update(query=check.query, comparison=check.comparison,
                        threshold=check.threshold)
    else:
        snapshot["selector"] = check.selector or {}
    return snapshot


def copy_checks(stage: PipelineStage) -> list[StageHealthCheck]:
    """New rows with a stage's checks (cloning a pipeline, replacing a draft's stages)."""
    return [StageHealthCheck(position=c.position, kind=c.kind, name=c.name, query=c.query,
                             comparison=c.comparison, threshold=c.threshold,
                             interval_seconds=c.interval_seconds,
                             failures_to_trip=c.failures_to_trip,
                             selector=dict(c.selector) if c.selector else None)
            for c in stage.checks]


def parse_stage_checks(data: dict[str, Any]) -> dict[str, Any]:
    """A whole-stage definition's `health_checks` (list) and `on_unhealthy` as stage columns
    (the API's create/replace). Raises Invalid with paths `health_checks[i].field`."""
    errors: dict[str, list[str]] = {}
    raw = data.get("health_checks") or []
    if not isinstance(raw, list) or len(raw) > MAX_CHECKS:
        raise Invalid("Too many checks.", {"health_checks": [
            f"A list of at most {MAX_CHECKS} checks."]})
    checks = []
    for index, item in enumerate(raw):
        try:
            checks.append(StageHealthCheck(position=index, **check_fields(item or {})))
        except Invalid as error:
            for field, messages in error.field_errors.items():
                errors.setdefault(f"health_checks[{index}].{field}", []).extend(messages)
    try:
        on_unhealthy = parse_on_unhealthy(data.get("on_unhealthy"))
    except Invalid as error:
        errors.update(error.field_errors)
        on_unhealthy = "HOLD"
    if errors:
        raise Invalid("The health checks have problems.", errors)
    return {"checks": checks, "on_unhealthy": on_unhealthy}


def describe_check(check: StageHealthCheck) -> str:
    if check.kind == "PROMETHEUS":
        return (f"{check.query} {check.comparison} {check.threshold:g} every "
                f"{check.interval_seconds}s, {check.failures_to_trip} failure(s) in a row")
    labels = ", ".join(f"{k}={v}" for k, v in (check.selector or {}).items())
    return f"alert firing for the flag{' with ' + labels if labels else ''}"


def parse_on_unhealthy(raw: Any) -> str:
    value = str(raw or "HOLD").strip().upper()
    if value not in ON_UNHEALTHY:
        raise Invalid("Unknown reaction.", {"on_unhealthy": ["Choose hold or roll back."]})
    return value
