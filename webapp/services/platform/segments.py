"""Segments: named rule trees over identity traits.

Rule trees are validated here. Field errors name the place in the tree with a path: `r0` is
the first top-level rule, `r0.r1` its second nested rule, `r0.c2.value` the value of the third
condition of the first rule. The rule builder's form uses the same paths as input names.
"""

import math
from typing import Any

from sqlalchemy import select, update

from webapp.extensions import db
from webapp.models import (
    Environment,
    Feature,
    PipelineStage,
    Project,
    ReleasePipeline,
    Segment,
    SegmentOverride,
    StageAction,
)
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid
from webapp.services.governance import audit
from webapp.services.lookups import one_in
from webapp.services.platform import flag_changes, regexes
from webapp.services.platform.flag_changes import bump_revision
from webapp.services.platform.projects import check_name

OPERATORS = (
    "EQUAL", "NOT_EQUAL", "GREATER_THAN", "GREATER_THAN_INCLUSIVE", "LESS_THAN",
    "LESS_THAN_INCLUSIVE", "CONTAINS", "NOT_CONTAINS", "REGEX", "PERCENTAGE_SPLIT", "MODULO",
    "IS_SET", "IS_NOT_SET", "IN",
)
RULE_TYPES = ("ALL", "ANY", "NONE")
NO_VALUE_OPERATORS = ("IS_SET", "IS_NOT_SET")
MAX_DEPTH = 4
MAX_CONDITIONS = 100
MAX_PROPERTY = 1000
MAX_VALUE = 1000
MAX_DESCRIPTION = 2000


def bump_project_revisions(project_id: int) -> None:
    for env_id in db.session.scalars(
            select(Environment.id).where(Environment.project_id == project_id)):
        bump_revision(env_id)


# --- validation ---------------------------------------------------------------------------------


def validate_rules(rules: Any) -> list[dict[str, Any]]:
    """The rule tree in the flag engine's shape, or Invalid with errors by path (see module doc).

    Refuses an unknown rule type or operator, a missing property (except PERCENTAGE_SPLIT), a
    missing value (except IS_SET / IS_NOT_SET, which take none), a REGEX pattern Railyard
    does not take (`regexes.refusal`: malformed, beyond RE2, or exponential in SDKs), a
    PERCENTAGE_SPLIT outside 0–100, a MODULO not "divisor|remainder", an empty IN list, rules
    holding nothing, nesting deeper than 4 levels, and a tree without any condition.
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(rules, list):
        raise Invalid("Rules must be a list.", {"rules": ["Rules must be a list of rules."]})
    counter = {"conditions": 0}
    clean = [_rule(rule, f"r{i}", 1, errors, counter) for i, rule in enumerate(rules)]
    if counter["conditions"] == 0 and not errors:
        errors["rules"] = ["Add at least one condition."]
    elif counter["conditions"] > MAX_CONDITIONS:
        errors["rules"] = [f"At most {MAX_CONDITIONS} conditions."]
    if errors:
        first = next(iter(errors.values()))[0]
        raise Invalid(f"Check the rules: {first}", errors)
    return clean


def _rule(rule: Any, path: str, depth: int, errors: dict[str, list[str]],
          counter: dict[str, int]) -> dict[str, Any]:
    if not isinstance(rule, dict):
        errors[path] = ["A rule must be an object with a type, conditions and rules."]
        return {}
    rule_type = rule.get("type")
    if rule_type not in RULE_TYPES:
        errors[f"{path}.type"] = ["Choose ALL, ANY or NONE."]
    conditions = rule.get("conditions") or []
    nested = rule.get("rules") or []
    if not conditions and not nested:
        errors.setdefault(path, []).append("This rule is empty: add a condition or remove it.")
    if depth > MAX_DEPTH:
        errors[path] = [f"Rules nest at most {MAX_DEPTH} levels deep."]
        nested = []  # refused at this level: what hangs below it is not looked at
    clean_conditions = [_condition(c, f"{path}.c{i}", errors) for i, c in enumerate(conditions)]
    counter["conditions"] += len(conditions)
    clean_nested = [_rule(r, f"{path}.r{i}", depth + 1, errors, counter)
                    for i, r in enumerate(nested)]
    return {"type": rule_type, "conditions": clean_conditions, "rules": clean_nested}


def _condition(condition: Any, path: str, errors: dict[str, list[str]]) -> dict[str, Any]:
    if not isinstance(condition, dict):
        errors[path] = ["A condition must be an object with property, operator and value."]
        return {}
    operator = condition.get("operator")
    prop = condition.get("property")
    prop = "" if prop is None else str(prop).strip()
    value = condition.get("value")
    text = "" if value is None else (",".join(map(str, value)) if isinstance(value, list)
                                     else str(value).strip())
    if operator not in OPERATORS:
        errors[f"{path}.operator"] = [
            f"Unknown operator “{operator or ''}”: choose one from the list."]
        return {"property": prop, "operator": operator, "value": value}
    if not prop and operator != "PERCENTAGE_SPLIT":
        errors[f"{path}.property"] = ["A trait name is required."]
    elif len(prop) > MAX_PROPERTY:
        errors[f"{path}.property"] = [f"At most {MAX_PROPERTY} characters."]
    message = _value_problem(operator, text)
    if message:
        errors[f"{path}.value"] = [message]
    if operator in NO_VALUE_OPERATORS:
        value = None
    elif isinstance(value, str):
        value = text
    return {"property": prop or None if operator == "PERCENTAGE_SPLIT" else prop,
            "operator": operator, "value": value}


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _value_problem(operator: str, text: str) -> str | None:
    if operator in NO_VALUE_OPERATORS:
        return "This operator takes no value; leave it empty." if text else None
    if not text:
        return "A value is required."
    if len(text) > MAX_VALUE:
        return f"At most {MAX_VALUE} characters."
    if operator == "REGEX":
        return regexes.refusal(text)
    elif operator == "PERCENTAGE_SPLIT":
        number = _number(text)
        if number is None or not 0 <= number <= 100:
            return "Enter a percentage between 0 and 100."
    elif operator == "MODULO":
        parts = text.split("|")
        numbers = [_number(part.strip()) for part in parts]
        if len(parts) != 2 or None in numbers:
            return "Enter divisor|remainder, like 4|0."
        if numbers[0] == 0:
            return "The divisor cannot be 0."
    elif operator == "IN" and not [item for item in text.split(",") if item.strip()]:
        return "Enter a comma-separated list, like gb,fr,de."
    return None


def _check_description(description: str) -> str:
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise Invalid("Description too long.",
                      {"description": [f"At most {MAX_DESCRIPTION} characters."]})
    return description


def _check(name: str, description: str, rules: Any) -> tuple[str, str, list[dict[str, Any]]]:
    """Validate all fields at once, so every message shows in one answer."""
    errors: dict[str, list[str]] = {}
    checked: list[Any] = []
    for check, args in ((check_name, (name,)), (_check_description, (description,)),
                        (validate_rules, (rules,))):
        try:
            checked.append(check(*args))
        except Invalid as error:
            errors.update(error.field_errors)
            checked.append(None)
    if errors:
        first = next(iter(errors.values()))[0]
        raise Invalid(f"Check the segment: {first}", errors)
    return checked[0], checked[1], checked[2]


# --- reading ------------------------------------------------------------------------------------


def list_segments(project_id: int) -> list[Segment]:
    """The project's segments by name, without hidden system segments."""
    return list(db.session.scalars(
        select(Segment).where(Segment.project_id == project_id, Segment.is_system.is_(False))
        .order_by(Segment.name, Segment.id)))


def pipelines_using(segment_id: int) -> list[ReleasePipeline]:
    """The release pipelines (not deleted) with an action on the segment, by name."""
    return list(db.session.scalars(
        select(ReleasePipeline)
        .join(PipelineStage, PipelineStage.pipeline_id == ReleasePipeline.id)
        .join(StageAction, StageAction.stage_id == PipelineStage.id)
        .where(StageAction.segment_id == segment_id, ReleasePipeline.deleted_at.is_(None))
        .distinct().order_by(ReleasePipeline.name)))


def override_count(segment_id: int) -> int:
    return db.session.scalar(
        select(db.func.count(SegmentOverride.id))
        .where(SegmentOverride.segment_id == segment_id)) or 0


# --- changes ------------------------------------------------------------------------------------


def create_segment(
    project: Project, name: str, rules: list[dict[str, Any]], actor: Actor, *,
    description: str = "", is_system: bool = False, commit: bool = True,
) -> Segment:
    """Create a segment. Refuses a bad name, description or rule tree (Invalid, errors by path;
    system segments are built by the engine and not checked). Bumps every environment's
    revision. Audited as SEGMENT_CREATED (system segments too)."""
    if is_system:
        name = check_name(name)
    else:
        name, description, rules = _check(name, description, rules)
    segment = Segment(project_id=project.id, name=name, description=description, rules=rules,
                      is_system=is_system)
    db.session.add(segment)
    db.session.flush()
    bump_project_revisions(project.id)
    audit.record(actor, "SEGMENT_CREATED", f"Segment {name} created", project_id=project.id,
                 object_type="segment", object_id=segment.id, object_label=name,
                 after={"name": name, "description": description, "rules": rules})
    if commit:
        db.session.commit()
    return segment


def update_segment(segment: Segment, actor: Actor, *, name: str, description: str,
                   rules: list[dict[str, Any]]) -> Segment:
    """Replace the segment's name, description and rules. Refuses what `create_segment` refuses.
    Bumps every environment's revision. Audited as SEGMENT_UPDATED with before/after."""
    name, description, rules = _check(name, description, rules)
    before = {"name": segment.name, "description": segment.description, "rules": segment.rules}
    segment.name, segment.description, segment.rules = name, description, rules
    bump_project_revisions(segment.project_id)
    audit.record(actor, "SEGMENT_UPDATED", f"Segment {name} updated", project_id=segment.project_id,
                 object_type="segment", object_id=segment.id, object_label=name, before=before,
                 after={"name": name, "description": description, "rules": rules})
    db.session.commit()
    return segment


def delete_refusal(segment: Segment) -> str | None:
    """Why the segment cannot be deleted now (the pipelines using it), or None."""
    names = [pipeline.name for pipeline in pipelines_using(segment.id)]
    if not names:
        return None
    listed = ", ".join(f"“{name}”" for name in names)
    return (f"Segment {segment.name} is used by the release "
            f"pipeline{'s' if len(names) > 1 else ''} "
            f"{listed}: change or delete {'them' if len(names) > 1 else 'it'} first.")


def delete_segment(segment: Segment, actor: Actor) -> None:
    """Delete the segment and its overrides on every flag.

    Refuses while a release pipeline that is not deleted has an action on it (Conflict naming
    them). Each removed override is audited as SEGMENT_OVERRIDE_DELETED, the segment as
    SEGMENT_DELETED (before: name, description, rules). Actions of deleted pipelines lose their
    reference to it. Bumps every environment's revision.
    """
    refusal = delete_refusal(segment)
    if refusal:
        raise Conflict(refusal)
    overrides = list(db.session.execute(
        select(SegmentOverride.feature_id, SegmentOverride.environment_id)
        .where(SegmentOverride.segment_id == segment.id)))
    names: dict[int, str] = {
        feature_id: name for feature_id, name in db.session.execute(
            select(Feature.id, Feature.name).where(
                Feature.id.in_({row.feature_id for row in overrides} or {-1})))}
    env_names: dict[int, str] = {
        env_id: name for env_id, name in db.session.execute(
            select(Environment.id, Environment.name).where(
                Environment.project_id == segment.project_id))}
    for row in overrides:
        flag = names.get(row.feature_id, str(row.feature_id))
        flag_changes.apply_change(
            {"kind": "remove_override", "environment_id": row.environment_id,
             "feature_id": row.feature_id, "segment_id": segment.id},
            actor, project_id=segment.project_id, event_type="SEGMENT_OVERRIDE_DELETED",
            message=f"Override of {flag} for segment {segment.name} removed in "
                    f"{env_names.get(row.environment_id, '')} (segment deleted)",
            object_label=flag)
    db.session.execute(update(StageAction).where(StageAction.segment_id == segment.id)
                       .values(segment_id=None))
    audit.record(actor, "SEGMENT_DELETED", f"Segment {segment.name} deleted",
                 project_id=segment.project_id, object_type="segment", object_id=segment.id,
                 object_label=segment.name,
                 before={"name": segment.name, "description": segment.description,
                         "rules": segment.rules})
    bump_project_revisions(segment.project_id)
    db.session.delete(segment)
    db.session.commit()


def get_segment(project_id: int, segment_id: int) -> Segment:
    """The project's visible segment (not a rollout's hidden one); NotFound otherwise."""
    return one_in(Segment, segment_id, "Segment not found.", Segment.is_system.is_(False),
                  project_id=project_id)
