"""Flags: creating, changing states, values and overrides by hand, details, delete."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry, Environment, Feature, FeatureState, SegmentOverride
from webapp.services.actors import SYSTEM
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.pages import flag_table
from webapp.services.platform import flags


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"name": ""}, "name", "A name is required."),
    ({"name": "   "}, "name", "A name is required."),
    ({"name": "x" * 256}, "name", "At most 255 characters."),
    ({"name": "ok", "value_type": "float"}, "value_type", "Choose a flag type."),
    ({"name": "ok", "value_type": "integer", "default_value": "12a"}, "default_value",
     "Enter a whole number, like 42."),
    ({"name": "ok", "value_type": "boolean", "default_value": "yes"}, "default_value",
     "Enter true or false."),
    ({"name": "ok", "value_type": "none", "default_value": "x"}, "default_value",
     "This flag takes no value."),
    ({"name": "ok", "description": "d" * 2001}, "description", "At most 2000 characters."),
])
def test_create_feature_refuses_bad_input(project, kwargs, field, message):
    kwargs = dict(kwargs)  # the same dict serves the test on each database
    name = kwargs.pop("name")
    with pytest.raises(Invalid) as caught:
        flags.create_feature(project, name, SYSTEM, **kwargs)
    assert caught.value.field_errors[field] == [message]
    assert db.session.scalar(select(Feature.id)) is None


def test_duplicate_name_in_a_project_is_refused_but_not_across_projects(make, project, flag):
    with pytest.raises(Invalid) as caught:
        flags.create_feature(project, "checkout", SYSTEM)
    assert caught.value.field_errors["name"] == [
        "A flag with this name already exists in this project."]
    flags.create_feature(make.project("Other"), "checkout", SYSTEM)


def test_create_feature_gives_every_environment_its_default_state(project, envs):
    feature = flags.create_feature(project, "limit", SYSTEM, value_type="integer",
                                   default_enabled=True, default_value="7")
    states = db.session.scalars(
        select(FeatureState).where(FeatureState.feature_id == feature.id)).all()
    assert {(s.environment_id, s.enabled, s.value) for s in states} == {
        (env.id, True, 7) for env in envs.values()}


def test_set_state_changes_one_environment_bumps_revision_and_audits(flag, envs, staging):
    revisions = {env.id: env.revision for env in envs.values()}
    flags.set_state(flag, staging.id, SYSTEM, enabled=True)
    rows = flag_table.flag_rows(flag.project_id, list(envs.values()))
    assert [s.enabled for s in rows[0].states] == [False, True, False]
    db.session.expire_all()
    assert db.session.get(Environment, staging.id).revision == revisions[staging.id] + 1
    production = envs["Production"]
    assert db.session.get(Environment, production.id).revision == revisions[production.id]
    entry = flags.history(flag.id)[0]
    assert entry.event_type == "FEATURE_STATE_UPDATED"
    assert entry.message == "Flag checkout enabled in Staging"
    assert entry.before == {"enabled": False, "value": None}
    assert entry.after == {"enabled": True, "value": None}
    assert entry.environment_id == staging.id


@pytest.mark.parametrize(("fixture", "raw", "message"), [
    ("number_flag", "ten", "Enter a whole number, like 42."),
    ("number_flag", "1.5", "Enter a whole number, like 42."),
    ("flag", "anything", "This flag takes no value."),
])
def test_set_state_refuses_a_value_not_fitting_the_type(request, staging, fixture, raw, message):
    feature = request.getfixturevalue(fixture)
    before = db.session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()))
    with pytest.raises(Invalid) as caught:
        flags.set_state(feature, staging.id, SYSTEM, raw_value=raw)
    assert caught.value.field_errors == {"value": [message]}
    assert db.session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc())) == before


def test_set_state_parses_the_value(number_flag, staging):
    flags.set_state(number_flag, staging.id, SYSTEM, raw_value=" 42 ")
    state = db.session.scalar(select(FeatureState).where(
        FeatureState.feature_id == number_flag.id, FeatureState.environment_id == staging.id))
    assert state.value == 42
    assert (flags.history(number_flag.id)[0].message
            == "Flag max_upload value set to “42” in Staging")


def test_environment_of_another_project_is_not_found(make, flag):
    other_env = make.environments(make.project("Other"))[0]
    with pytest.raises(NotFound):
        flags.set_state(flag, other_env.id, SYSTEM, enabled=True)


def test_manual_changes_are_refused_while_a_pipeline_owns_the_flag(
    flag, staging, segment, pipeline_with
):
    pipeline_with("Checkout rollout", flag=flag)
    with pytest.raises(Conflict, match="Checkout rollout"):
        flags.set_state(flag, staging.id, SYSTEM, enabled=True)
    with pytest.raises(Conflict, match="Checkout rollout"):
        flags.save_override(flag, staging.id, segment.id, SYSTEM, enabled=True)
    state = db.session.scalar(select(FeatureState).where(
        FeatureState.feature_id == flag.id, FeatureState.environment_id == staging.id))
    assert state.enabled is False
    # description and tags stay editable
    flags.update_details(flag, SYSTEM, description="Still editable", tags="a, b")
    assert flag.description == "Still editable"


def test_overrides_create_edit_remove_audited_in_priority_order(make, project, text_flag, staging):
    pro, beta = make.segment(project, "Pro"), make.segment(project, "Beta")
    flags.save_override(text_flag, staging.id, pro.id, SYSTEM, enabled=True, raw_value="Hi pro")
    flags.save_override(text_flag, staging.id, beta.id, SYSTEM, enabled=False, raw_value="",
                        priority="0")
    flags.save_override(text_flag, staging.id, pro.id, SYSTEM, enabled=True, raw_value="Hey",
                        priority="5", must_exist=True)
    rows = flags.overrides_of(text_flag.id)[staging.id]
    assert [(r.segment.name, r.priority, r.enabled, r.value) for r in rows] == [
        ("Beta", 0, False, None), ("Pro", 5, True, "Hey")]
    flags.remove_override(text_flag, staging.id, beta.id, SYSTEM)
    events = [e.event_type for e in flags.history(text_flag.id)][:4]
    assert events == ["SEGMENT_OVERRIDE_DELETED", "SEGMENT_OVERRIDE_UPDATED",
                      "SEGMENT_OVERRIDE_CREATED", "SEGMENT_OVERRIDE_CREATED"]


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"raw_value": "x" * 20_001}, "value", "At most 20000 characters."),
    ({"priority": "-1"}, "priority", "Enter a whole number, 0 or more (lower wins)."),
    ({"priority": "first"}, "priority", "Enter a whole number, 0 or more (lower wins)."),
])
def test_override_input_is_checked(text_flag, staging, segment, kwargs, field, message):
    with pytest.raises(Invalid) as caught:
        flags.save_override(text_flag, staging.id, segment.id, SYSTEM, enabled=True, **kwargs)
    assert caught.value.field_errors[field] == [message]
    assert db.session.scalar(select(SegmentOverride.id)) is None


def test_override_refuses_segments_of_other_projects_hidden_ones_and_duplicates(
    make, flag, staging, segment
):
    foreign = make.segment(make.project("Other"), "Foreign")
    hidden = make.segment(flag.project, "Rollout 20%", is_system=True)
    for segment_id in (foreign.id, hidden.id, None):
        with pytest.raises(Invalid) as caught:
            flags.save_override(flag, staging.id, segment_id, SYSTEM, enabled=True)
        assert caught.value.field_errors == {
            "segment_id": ["Choose one of this project's segments."]}
    flags.save_override(flag, staging.id, segment.id, SYSTEM, enabled=True)
    with pytest.raises(Invalid, match="Override exists"):
        flags.save_override(flag, staging.id, segment.id, SYSTEM, enabled=False)
    with pytest.raises(NotFound):
        flags.remove_override(flag, staging.id, segment.id + 100, SYSTEM)


@pytest.mark.parametrize(("tags", "expected"), [
    ("a, b, a, ,c", ["a", "b", "c"]),
    ("", []),
    (["x", " y "], ["x", "y"]),
])
def test_tags_are_trimmed_and_unique(tags, expected):
    assert flags.parse_tags(tags) == expected


@pytest.mark.parametrize(("tags", "message"), [
    (",".join(f"t{i}" for i in range(21)), "At most 20 tags."),
    ("x" * 41, "Each tag at most 40 characters."),
])
def test_bad_tags_are_refused(flag, tags, message):
    with pytest.raises(Invalid) as caught:
        flags.update_details(flag, SYSTEM, description="", tags=tags)
    assert caught.value.field_errors == {"tags": [message]}


def test_delete_removes_states_and_overrides_and_keeps_the_history(flag, staging, segment, project):
    flags.save_override(flag, staging.id, segment.id, SYSTEM, enabled=True)
    flag_id = flag.id
    flags.delete_feature(flag, SYSTEM)
    assert db.session.get(Feature, flag_id) is None
    assert db.session.scalar(
        select(FeatureState.id).where(FeatureState.feature_id == flag_id)) is None
    assert db.session.scalar(select(SegmentOverride.id)) is None
    entries = db.session.scalars(select(AuditEntry).where(
        AuditEntry.object_label == "checkout").order_by(AuditEntry.id)).all()
    assert [e.event_type for e in entries] == [
        "FEATURE_CREATED", "SEGMENT_OVERRIDE_CREATED", "FEATURE_DELETED"]
    assert entries[-1].before["name"] == "checkout"


def test_delete_is_refused_while_in_a_pipeline(flag, pipeline_with):
    pipeline_with("Checkout rollout", flag=flag)
    with pytest.raises(Conflict, match="Checkout rollout"):
        flags.delete_feature(flag, SYSTEM)
    assert db.session.get(Feature, flag.id) is not None
