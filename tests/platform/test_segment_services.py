"""Segments: rule validation, create/update/delete, the pipelines that hold a segment."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry, Environment, Segment, SegmentOverride, StageAction
from webapp.services.actors import SYSTEM
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.platform import flags, segments


def tree(operator="EQUAL", value="pro", prop="plan", rule_type="ALL"):
    return [{"type": rule_type,
             "conditions": [{"property": prop, "operator": operator, "value": value}],
             "rules": []}]


@pytest.mark.parametrize(("rules", "path", "message"), [
    (tree(operator="LIKE"), "r0.c0.operator", "Unknown operator “LIKE”: choose one from the list."),
    (tree(operator="REGEX", value="(unclosed"), "r0.c0.value",
     "Not a valid regular expression: missing ), unterminated subpattern at position 0."),
    (tree(operator="PERCENTAGE_SPLIT", value="101", prop=""), "r0.c0.value",
     "Enter a percentage between 0 and 100."),
    (tree(operator="PERCENTAGE_SPLIT", value="half", prop=""), "r0.c0.value",
     "Enter a percentage between 0 and 100."),
    (tree(operator="PERCENTAGE_SPLIT", value="-1", prop=""), "r0.c0.value",
     "Enter a percentage between 0 and 100."),
    (tree(operator="MODULO", value="4"), "r0.c0.value", "Enter divisor|remainder, like 4|0."),
    (tree(operator="MODULO", value="a|1"), "r0.c0.value", "Enter divisor|remainder, like 4|0."),
    (tree(operator="MODULO", value="0|1"), "r0.c0.value", "The divisor cannot be 0."),
    (tree(operator="IN", value=" , ,"), "r0.c0.value",
     "Enter a comma-separated list, like gb,fr,de."),
    (tree(operator="IS_SET", value="x"), "r0.c0.value",
     "This operator takes no value; leave it empty."),
    (tree(operator="IS_NOT_SET", value="x"), "r0.c0.value",
     "This operator takes no value; leave it empty."),
    (tree(value=""), "r0.c0.value", "A value is required."),
    (tree(value="v" * 1001), "r0.c0.value", "At most 1000 characters."),
    (tree(prop=""), "r0.c0.property", "A trait name is required."),
    (tree(prop="p" * 1001), "r0.c0.property", "At most 1000 characters."),
    (tree(rule_type="SOME"), "r0.type", "Choose ALL, ANY or NONE."),
    ([], "rules", "Add at least one condition."),
    ([{"type": "ALL", "conditions": [], "rules": []}], "r0",
     "This rule is empty: add a condition or remove it."),
    ([{"type": "ALL", "conditions": [], "rules": [{"type": "ANY", "conditions": [
        {"property": "a", "operator": "NOPE", "value": "1"}], "rules": []}]}],
     "r0.r0.c0.operator", "Unknown operator “NOPE”: choose one from the list."),
    ("not a list", "rules", "Rules must be a list of rules."),
])
def test_validate_rules_names_the_problem_and_where(rules, path, message):
    with pytest.raises(Invalid) as caught:
        segments.validate_rules(rules)
    assert caught.value.field_errors[path] == [message]


@pytest.mark.parametrize(("operator", "value", "prop"), [
    ("EQUAL", "pro", "plan"), ("NOT_EQUAL", "free", "plan"), ("GREATER_THAN", "3", "seats"),
    ("GREATER_THAN_INCLUSIVE", "3", "seats"), ("LESS_THAN", "3.5", "seats"),
    ("LESS_THAN_INCLUSIVE", "3", "seats"), ("CONTAINS", "@acme", "email"),
    ("NOT_CONTAINS", "@acme", "email"), ("REGEX", r".*@acme\.com$", "email"),
    ("PERCENTAGE_SPLIT", "25", ""), ("MODULO", "4|0", "user_id"), ("IS_SET", "", "plan"),
    ("IS_NOT_SET", "", "plan"), ("IN", "gb, fr,de", "country"),
])
def test_each_operator_accepts_good_values(operator, value, prop):
    clean = segments.validate_rules(tree(operator=operator, value=value, prop=prop))
    condition = clean[0]["conditions"][0]
    assert condition["operator"] == operator
    if operator in ("IS_SET", "IS_NOT_SET"):
        assert condition["value"] is None
    if operator == "PERCENTAGE_SPLIT":
        assert condition["property"] is None


def test_nesting_is_limited():
    rule = {"type": "ALL",
            "conditions": [{"property": "a", "operator": "EQUAL", "value": "1"}],
            "rules": []}
    for _ in range(4):
        rule = {"type": "ANY", "conditions": [], "rules": [rule]}
    with pytest.raises(Invalid) as caught:
        segments.validate_rules([rule])
    assert caught.value.field_errors["r0.r0.r0.r0.r0"] == ["Rules nest at most 4 levels deep."]


def test_create_reports_every_field_at_once(project):
    with pytest.raises(Invalid) as caught:
        segments.create_segment(project, "", tree(operator="LIKE"), SYSTEM)
    assert set(caught.value.field_errors) == {"name", "r0.c0.operator"}
    assert db.session.scalar(select(Segment.id)) is None


def test_create_and_update_bump_revisions_and_audit_before_after(project, envs):
    revision = db.session.get(Environment, envs["Staging"].id).revision
    segment = segments.create_segment(project, "Pro", tree(), SYSTEM, description="Paying")
    segments.update_segment(segment, SYSTEM, name="Pro plus", description="More",
                            rules=tree(operator="IN", value="pro,plus"))
    db.session.expire_all()
    assert db.session.get(Environment, envs["Staging"].id).revision == revision + 2
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.event_type == "SEGMENT_UPDATED"))
    assert entry.before["name"] == "Pro" and entry.after["name"] == "Pro plus"
    assert entry.after["rules"][0]["conditions"][0] == {
        "property": "plan", "operator": "IN", "value": "pro,plus"}
    assert entry.object_id == segment.id


def test_segments_list_hides_system_segments_and_other_projects(make, project, segment):
    make.segment(project, "Rollout", is_system=True)
    other = make.segment(make.project("Other"), "Foreign")
    assert [s.name for s in segments.list_segments(project.id)] == ["Pro users"]
    with pytest.raises(NotFound):
        segments.get_segment(project.id, other.id)


def test_delete_is_refused_while_a_live_pipeline_uses_it(segment, pipeline_with):
    pipeline_with("Beta first", segment=segment)
    pipeline_with("Gone", segment=segment, deleted=True)
    assert [p.name for p in segments.pipelines_using(segment.id)] == ["Beta first"]
    with pytest.raises(Conflict) as caught:
        segments.delete_segment(segment, SYSTEM)
    assert "“Beta first”" in caught.value.message and "Gone" not in caught.value.message
    assert db.session.get(Segment, segment.id) is not None


def test_delete_removes_its_overrides_audited_and_frees_deleted_pipelines(
    flag, staging, segment, pipeline_with
):
    flags.save_override(flag, staging.id, segment.id, SYSTEM, enabled=True)
    pipeline_with("Old", segment=segment, deleted=True)
    segment_id = segment.id
    segments.delete_segment(segment, SYSTEM)
    assert db.session.get(Segment, segment_id) is None
    assert db.session.scalar(select(SegmentOverride.id)) is None
    assert db.session.scalar(
        select(StageAction.segment_id).where(StageAction.segment_id.is_not(None))) is None
    events = db.session.scalars(
        select(AuditEntry.event_type).order_by(AuditEntry.id.desc()).limit(2)).all()
    assert events == ["SEGMENT_DELETED", "SEGMENT_OVERRIDE_DELETED"]
