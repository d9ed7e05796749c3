"""The pipeline rules, service by service: input → message tables, and what each change audits."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from webapp.clock import now
from webapp.extensions import db
from webapp.models import AuditEntry, PipelineRun, PipelineStage, ReleasePipeline, StageAction
from webapp.services.actors import SYSTEM, Actor
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.pipelines import (
    builder,
    catalog,
    describe,
    edit_sessions,
    inputs,
    readiness,
)

TOGGLE = {"action_type": "TOGGLE_FEATURE", "enabled": "true"}


def audits(pipeline_id, event=None):
    query = select(AuditEntry).where(AuditEntry.pipeline_id == pipeline_id)
    if event:
        query = query.where(AuditEntry.event_type == event)
    return list(db.session.scalars(query.order_by(AuditEntry.id)))


def fresh(project, pipeline):
    return catalog.get_pipeline(project.id, pipeline.id)


def snapshot(pipeline_id):
    """Everything an edit could change, to prove a refused one changed nothing."""
    db.session.expire_all()
    p = db.session.get(ReleasePipeline, pipeline_id)
    return (
        p.name,
        p.description,
        p.status,
        p.version,
        p.deleted_at,
        [
            (
                s.id,
                s.position,
                s.name,
                s.environment_id,
                s.trigger_type,
                s.wait_seconds,
                [
                    (
                        a.id,
                        a.position,
                        a.action_type,
                        a.enabled,
                        a.value,
                        a.sets_value,
                        a.segment_id,
                        a.rollout_initial,
                        a.rollout_step,
                        a.rollout_interval_seconds,
                    )
                    for a in s.actions
                ],
            )
            for s in p.stages
        ],
        len(audits(pipeline_id)),
    )


# --- create and names ----------------------------------------------------------------------------


def test_create_starts_a_draft_and_audits(project, editor):
    pipeline = builder.create_pipeline(
        project, "  Web release ", Actor.for_user(editor), description="For the web app"
    )
    assert (pipeline.name, pipeline.status, pipeline.version) == ("Web release", "draft", 1)
    [entry] = audits(pipeline.id)
    assert entry.event_type == "RELEASE_PIPELINE_CREATED"
    assert entry.object_type == "release_pipeline"
    assert entry.actor_user_id == editor.id


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "A name is required."),
        ("   ", "A name is required."),
        (None, "A name is required."),
        ("x" * 256, "At most 255 characters."),
    ],
)
def test_create_refuses_bad_names(project, name, message):
    with pytest.raises(Invalid) as error:
        builder.create_pipeline(project, name, SYSTEM)
    assert error.value.field_errors == {"name": [message]}
    assert db.session.scalar(select(func.count()).select_from(ReleasePipeline)) == 0


def test_a_255_character_name_is_fine(project):
    assert len(builder.create_pipeline(project, "x" * 255, SYSTEM).name) == 255


# --- stages --------------------------------------------------------------------------------------


def test_add_stage_names_it_after_its_environment(project, make):
    pipeline = builder.create_pipeline(project, "P", SYSTEM)
    staging = make.environments(project)[1]
    stage = builder.add_stage(pipeline, 1, SYSTEM, environment_id=str(staging.id))
    second = builder.add_stage(fresh(project, pipeline), 2, SYSTEM)
    assert (stage.name, stage.position, stage.trigger_type) == ("Staging", 0, "ON_ENTER")
    assert (second.name, second.position, second.environment_id) == ("Stage 2", 1, None)
    # Both additions, by one actor within minutes, are one session entry of the builder.
    entries = audits(pipeline.id)
    assert [e.event_type for e in entries] == ["RELEASE_PIPELINE_CREATED",
                                               "RELEASE_PIPELINE_UPDATED"]
    assert entries[-1].before == {}
    assert entries[-1].after["Stage 1"]["name"] == "Staging"
    assert entries[-1].after["Stage 2"]["name"] == "Stage 2"


def test_a_31st_stage_is_refused(project, build):
    pipeline = build.pipeline(project, stages=[{"name": f"S{n}"} for n in range(30)])
    before = snapshot(pipeline.id)
    with pytest.raises(Invalid) as error:
        builder.add_stage(pipeline, pipeline.version, SYSTEM, name="One too many")
    assert error.value.field_errors == {"stage": ["A pipeline has at most 30 stages."]}
    assert snapshot(pipeline.id) == before


STAGE_CASES = [
    ({"name": ""}, "name", "A name is required."),
    ({"name": "y" * 256}, "name", "At most 255 characters."),
    ({"environment_id": "999999"}, "environment_id", "Choose one of this project's environments."),
    ({"environment_id": "abc"}, "environment_id", "Choose one of this project's environments."),
    ({"environment_id": "OTHER"}, "environment_id", "Choose one of this project's environments."),
    (
        {"trigger_type": "ON_EXIT"},
        "trigger_type",
        "Choose “When the flag enters this stage” or “Wait”.",
    ),
    (
        {"trigger_type": "WAIT_FOR", "wait_amount": "0", "wait_unit": "hours"},
        "wait_amount",
        "The wait must be more than 0.",
    ),
    (
        {"trigger_type": "WAIT_FOR", "wait_amount": "-3", "wait_unit": "hours"},
        "wait_amount",
        "The wait must be more than 0.",
    ),
    (
        {"trigger_type": "WAIT_FOR", "wait_amount": "soon", "wait_unit": "hours"},
        "wait_amount",
        "Enter the wait as a whole number of hours.",
    ),
    (
        {"trigger_type": "WAIT_FOR", "wait_amount": "1.5", "wait_unit": "days"},
        "wait_amount",
        "Enter the wait as a whole number of days.",
    ),
    (
        {"trigger_type": "WAIT_FOR", "wait_amount": "", "wait_unit": "days"},
        "wait_amount",
        "Enter how many days to wait.",
    ),
    (
        {"trigger_type": "WAIT_FOR", "wait_amount": "366", "wait_unit": "days"},
        "wait_amount",
        "The wait can be at most 365 days.",
    ),
    (
        {"trigger_type": "WAIT_FOR", "wait_amount": str(365 * 24 + 1), "wait_unit": "hours"},
        "wait_amount",
        "The wait can be at most 365 days.",
    ),
    (
        {"trigger_type": "WAIT_FOR", "wait_amount": "3", "wait_unit": "weeks"},
        "wait_amount",
        "Choose minutes, hours or days.",
    ),
]


@pytest.mark.parametrize(("data", "field", "message"), STAGE_CASES)
def test_stage_edits_refuse_bad_input(project, make, build, data, field, message):
    other = make.project("Other")
    if data.get("environment_id") == "OTHER":
        data = {**data, "environment_id": str(make.environments(other)[0].id)}
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "env": "Development"}])
    before = snapshot(pipeline.id)
    with pytest.raises(Invalid) as error:
        builder.update_stage(pipeline, pipeline.version, pipeline.stages[0].id, data, SYSTEM)
    assert error.value.field_errors[field] == [message]
    assert snapshot(pipeline.id) == before


def test_add_stage_refuses_a_foreign_environment(project, make):
    other_env = make.environments(make.project("Other"))[0]
    pipeline = builder.create_pipeline(project, "P", SYSTEM)
    with pytest.raises(Invalid) as error:
        builder.add_stage(pipeline, 1, SYSTEM, environment_id=other_env.id)
    assert error.value.field_errors == {
        "environment_id": ["Choose one of this project's environments."]
    }


@pytest.mark.parametrize(
    ("amount", "unit", "seconds"),
    [
        ("1", "minutes", 60),
        ("90", "minutes", 5400),
        ("3", "hours", 10800),
        ("1", "days", 86400),
        ("365", "days", 365 * 86400),
        (" 2 ", "days", 172800),
    ],
)
def test_waits_are_stored_in_seconds(project, build, amount, unit, seconds):
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "env": "Development"}])
    stage_id = pipeline.stages[0].id
    builder.update_stage(
        pipeline,
        pipeline.version,
        stage_id,
        {"trigger_type": "WAIT_FOR", "wait_amount": amount, "wait_unit": unit},
        SYSTEM,
    )
    stage = db.session.get(PipelineStage, stage_id)
    assert (stage.trigger_type, stage.wait_seconds) == ("WAIT_FOR", seconds)
    entry = audits(pipeline.id, "RELEASE_PIPELINE_UPDATED")[-1]
    assert (entry.before["Stage 1 · trigger_type"], entry.after["Stage 1 · trigger_type"]) == (
        "ON_ENTER", "WAIT_FOR")
    assert (entry.before["Stage 1 · wait_seconds"], entry.after["Stage 1 · wait_seconds"]) == (
        None, seconds)
    assert "trigger_type" in entry.message


def test_back_to_on_enter_clears_the_wait(project, build):
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "env": "Development", "wait": 600}])
    builder.update_stage(
        pipeline,
        pipeline.version,
        pipeline.stages[0].id,
        {"trigger_type": "ON_ENTER", "wait_amount": "10"},
        SYSTEM,
    )
    stage = fresh(project, pipeline).stages[0]
    assert (stage.trigger_type, stage.wait_seconds) == ("ON_ENTER", None)


def test_an_edit_that_changes_nothing_saves_nothing(project, build):
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "env": "Development"}])
    before = snapshot(pipeline.id)
    builder.update_stage(
        pipeline,
        pipeline.version,
        pipeline.stages[0].id,
        {"name": "Dev", "trigger_type": "ON_ENTER"},
        SYSTEM,
    )
    assert snapshot(pipeline.id) == before


def test_remove_and_move_keep_positions_dense(project, build, time_machine):
    pipeline = build.pipeline(project, stages=[{"name": n} for n in "ABCD"])
    # The moves and the removal start a builder session of their own.
    time_machine.move_to(now() + edit_sessions.COALESCE_WINDOW)
    b = pipeline.stages[1]
    builder.move_stage(pipeline, pipeline.version, b.id, "down", SYSTEM)
    pipeline = fresh(project, pipeline)
    assert [(s.name, s.position) for s in pipeline.stages] == [
        ("A", 0),
        ("C", 1),
        ("B", 2),
        ("D", 3),
    ]
    builder.remove_stage(pipeline, pipeline.version, pipeline.stages[0].id, SYSTEM)
    pipeline = fresh(project, pipeline)
    assert [(s.name, s.position) for s in pipeline.stages] == [("C", 0), ("B", 1), ("D", 2)]
    builder.move_stage(pipeline, pipeline.version, pipeline.stages[2].id, "up", SYSTEM)
    pipeline = fresh(project, pipeline)
    assert [(s.name, s.position) for s in pipeline.stages] == [("C", 0), ("D", 1), ("B", 2)]
    assert db.session.scalar(select(func.count()).select_from(StageAction)) == 3
    removed = [e for e in audits(pipeline.id) if "removed" in e.message]
    assert removed[0].before["Stage 1"]["name"] == "A" and "Stage 1" not in removed[0].after


@pytest.mark.parametrize(
    ("index", "direction", "message"),
    [
        (0, "up", "This stage is already the first."),
        (2, "down", "This stage is already the last."),
        (1, "sideways", "Move up or down."),
    ],
)
def test_moves_past_the_ends_are_refused(project, build, index, direction, message):
    pipeline = build.pipeline(project, stages=[{"name": n} for n in "ABC"])
    before = snapshot(pipeline.id)
    with pytest.raises(Invalid) as error:
        builder.move_stage(
            pipeline, pipeline.version, pipeline.stages[index].id, direction, SYSTEM
        )
    assert error.value.field_errors == {"direction": [message]}
    assert snapshot(pipeline.id) == before


def test_a_stage_of_another_pipeline_is_not_found(project, build):
    first = build.pipeline(project, stages=[{"name": "A"}])
    second = build.pipeline(project, name="Second", stages=[{"name": "B"}])
    with pytest.raises(NotFound):
        builder.remove_stage(first, first.version, second.stages[0].id, SYSTEM)


# --- actions -------------------------------------------------------------------------------------


ROLLOUT = {
    "action_type": "PHASED_ROLLOUT",
    "enabled": "true",
    "rollout_initial": "10",
    "rollout_step": "20",
    "rollout_every": "2",
    "rollout_unit": "hours",
}

ACTION_CASES = [
    ({"action_type": "DELETE_FLAG"}, "action_type", "Choose one of the listed actions."),
    ({}, "action_type", "Choose one of the listed actions."),
    ({"action_type": "TOGGLE_FEATURE", "enabled": "maybe"}, "enabled", "Choose enable or disable."),
    ({"action_type": "TOGGLE_FEATURE"}, "enabled", "Choose enable or disable."),
    (
        {"action_type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": "true"},
        "segment_id",
        "Choose a segment.",
    ),
    (
        {"action_type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": "true", "segment_id": "999999"},
        "segment_id",
        "Choose one of this project's segments.",
    ),
    (
        {"action_type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": "true", "segment_id": "x"},
        "segment_id",
        "Choose one of this project's segments.",
    ),
    (
        {"action_type": "UPDATE_FEATURE_VALUE_FOR_SEGMENT", "value": "1", "segment_id": "OTHER"},
        "segment_id",
        "Choose one of this project's segments.",
    ),
    (
        {"action_type": "UPDATE_FEATURE_VALUE_FOR_SEGMENT", "value": "1", "segment_id": "SYSTEM"},
        "segment_id",
        "Choose one of this project's segments.",
    ),
    (
        {**ROLLOUT, "rollout_initial": "0"},
        "rollout_initial",
        "The initial percentage must be more than 0 % and at most 100 %.",
    ),
    (
        {**ROLLOUT, "rollout_initial": "101"},
        "rollout_initial",
        "The initial percentage must be more than 0 % and at most 100 %.",
    ),
    (
        {**ROLLOUT, "rollout_initial": "-5"},
        "rollout_initial",
        "The initial percentage must be more than 0 % and at most 100 %.",
    ),
    (
        {**ROLLOUT, "rollout_initial": "ten"},
        "rollout_initial",
        "Enter the initial percentage as a whole percentage, 1 to 100.",
    ),
    (
        {**ROLLOUT, "rollout_step": "0"},
        "rollout_step",
        "The increase must be more than 0 % and at most 100 %.",
    ),
    (
        {**ROLLOUT, "rollout_step": "150"},
        "rollout_step",
        "The increase must be more than 0 % and at most 100 %.",
    ),
    ({**ROLLOUT, "rollout_every": "0"}, "rollout_every", "The interval must be more than 0."),
    (
        {**ROLLOUT, "rollout_every": "x"},
        "rollout_every",
        "Enter the interval as a whole number of hours.",
    ),
    (
        {**ROLLOUT, "rollout_every": "400", "rollout_unit": "days"},
        "rollout_every",
        "The interval can be at most 365 days.",
    ),
]


@pytest.mark.parametrize(("data", "field", "message"), ACTION_CASES)
def test_actions_refuse_bad_input(project, make, build, data, field, message):
    if data.get("segment_id") == "OTHER":
        data = {**data, "segment_id": str(make.segment(make.project("Other"), "Theirs").id)}
    if data.get("segment_id") == "SYSTEM":
        data = {**data, "segment_id": str(make.segment(project, "Hidden", is_system=True).id)}
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "env": "Development"}])
    before = snapshot(pipeline.id)
    with pytest.raises(Invalid) as error:
        builder.add_action(pipeline, pipeline.version, pipeline.stages[0].id, data, SYSTEM)
    assert error.value.field_errors[field] == [message]
    assert snapshot(pipeline.id) == before
    # The same rules hold when an existing action is edited.
    action_id = pipeline.stages[0].actions[0].id
    with pytest.raises(Invalid) as error:
        builder.update_action(pipeline, pipeline.version, action_id, data, SYSTEM)
    assert error.value.field_errors[field] == [message]
    assert snapshot(pipeline.id) == before


def test_every_bad_rollout_field_is_reported_at_once(project, build):
    pipeline = build.pipeline(project, stages=[{"name": "Dev"}])
    with pytest.raises(Invalid) as error:
        builder.add_action(
            pipeline,
            pipeline.version,
            pipeline.stages[0].id,
            {**ROLLOUT, "rollout_initial": "0", "rollout_step": "0", "rollout_every": "0"},
            SYSTEM,
        )
    assert set(error.value.field_errors) == {"rollout_initial", "rollout_step", "rollout_every"}


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("true", True),
        ("FALSE", False),
        ("42", 42),
        ("-7", -7),
        ("4.2", "4.2"),
        ("hello", "hello"),
        ('"42"', "42"),
        ('"true"', "true"),
        ("", None),
        ("  spaced  ", "spaced"),
    ],
)
def test_values_are_stored_as_typed_json(project, build, raw, stored):
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "actions": []}])
    action = builder.add_action(
        pipeline,
        pipeline.version,
        pipeline.stages[0].id,
        {"action_type": "UPDATE_FEATURE_VALUE", "value": raw},
        SYSTEM,
    )
    action = db.session.get(StageAction, action.id)
    assert action.sets_value is True
    assert action.value == stored and type(action.value) is type(stored)
    # What the builder shows in the field reads back as the same value.
    assert inputs.parse_value(describe.value_as_input(action)) == stored


def test_each_action_type_stores_its_columns(project, make, build):
    beta = make.segment(project, "Beta")
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "actions": []}])
    stage_id = pipeline.stages[0].id
    forms = [
        {"action_type": "TOGGLE_FEATURE", "enabled": "false", "value": "ignored"},
        {"action_type": "UPDATE_FEATURE_VALUE", "value": "7"},
        {
            "action_type": "TOGGLE_FEATURE_FOR_SEGMENT",
            "enabled": "true",
            "segment_id": str(beta.id),
        },
        {
            "action_type": "UPDATE_FEATURE_VALUE_FOR_SEGMENT",
            "value": "x",
            "segment_id": str(beta.id),
        },
        {**ROLLOUT, "value": ""},
    ]
    for form in forms:
        builder.add_action(
            fresh(project, pipeline), fresh(project, pipeline).version, stage_id, form, SYSTEM
        )
    actions = fresh(project, pipeline).stages[0].actions
    assert [
        (a.position, a.action_type, a.enabled, a.value, a.sets_value, a.segment_id) for a in actions
    ] == [
        (0, "TOGGLE_FEATURE", False, None, False, None),
        (1, "UPDATE_FEATURE_VALUE", None, 7, True, None),
        (2, "TOGGLE_FEATURE_FOR_SEGMENT", True, None, False, beta.id),
        (3, "UPDATE_FEATURE_VALUE_FOR_SEGMENT", None, "x", True, beta.id),
        (4, "PHASED_ROLLOUT", True, None, False, None),
    ]
    assert (
        actions[4].rollout_initial,
        actions[4].rollout_step,
        actions[4].rollout_interval_seconds,
    ) == (10, 20, 7200)
    assert [describe.describe_action(a) for a in actions] == [
        "Disable for everyone",
        "Set the value to 7 (integer) for everyone",
        "Enable for segment Beta",
        "Set the value to “x” (text) for segment Beta",
        "Phased rollout: enable for 10 %, +20 % every 2 hours",
    ]


def test_one_phased_rollout_per_stage(project, build):
    pipeline = build.pipeline(project, stages=[{"name": "Dev", "actions": [ROLLOUT, TOGGLE]}])
    stage = pipeline.stages[0]
    message = ["This stage already has a phased rollout (at most one per stage)."]
    with pytest.raises(Invalid) as error:
        builder.add_action(pipeline, pipeline.version, stage.id, ROLLOUT, SYSTEM)
    assert error.value.field_errors == {"action_type": message}
    with pytest.raises(Invalid):
        builder.update_action(pipeline, pipeline.version, stage.actions[1].id, ROLLOUT, SYSTEM)
    # Editing the rollout itself is fine.
    builder.update_action(
        pipeline, pipeline.version, stage.actions[0].id, {**ROLLOUT, "rollout_step": "50"}, SYSTEM
    )
    assert fresh(project, pipeline).stages[0].actions[0].rollout_step == 50


def test_update_move_and_remove_actions(project, build):
    pipeline = build.pipeline(
        project,
        stages=[
            {
                "name": "Dev",
                "actions": [TOGGLE, {"action_type": "UPDATE_FEATURE_VALUE", "value": "1"}, ROLLOUT],
            }
        ],
    )
    first, second, third = pipeline.stages[0].actions
    builder.update_action(
        pipeline,
        pipeline.version,
        first.id,
        {"action_type": "TOGGLE_FEATURE", "enabled": "false"},
        SYSTEM,
    )
    entry = audits(pipeline.id)[-1]
    assert (entry.before["Stage 1 · Action 1 · enabled"],
            entry.after["Stage 1 · Action 1 · enabled"]) == (True, False)
    pipeline = fresh(project, pipeline)
    builder.move_action(pipeline, pipeline.version, third.id, "up", SYSTEM)
    pipeline = fresh(project, pipeline)
    assert [a.id for a in pipeline.stages[0].actions] == [first.id, third.id, second.id]
    builder.remove_action(pipeline, pipeline.version, first.id, SYSTEM)
    pipeline = fresh(project, pipeline)
    assert [(a.id, a.position) for a in pipeline.stages[0].actions] == [
        (third.id, 0),
        (second.id, 1),
    ]


# --- versions: two editors -----------------------------------------------------------------------


def test_a_stale_edit_is_refused_and_changes_nothing(project, build):
    pipeline = build.pipeline(project, stages=[{"name": "Dev"}])
    seen = pipeline.version
    builder.update_stage(pipeline, seen, pipeline.stages[0].id, {"name": "Alice's"}, SYSTEM)
    pipeline = fresh(project, pipeline)
    before = snapshot(pipeline.id)
    for edit in (
        lambda: builder.update_stage(
            pipeline, seen, pipeline.stages[0].id, {"name": "Bob's"}, SYSTEM
        ),
        lambda: builder.add_stage(pipeline, seen, SYSTEM, name="Bob's"),
        lambda: builder.remove_stage(pipeline, seen, pipeline.stages[0].id, SYSTEM),
        lambda: builder.add_action(pipeline, seen, pipeline.stages[0].id, TOGGLE, SYSTEM),
        lambda: builder.publish_pipeline(pipeline, seen, SYSTEM),
        lambda: builder.update_details(pipeline, "not a number", SYSTEM, name="Bob's"),
    ):
        with pytest.raises(Conflict, match="Someone else changed this pipeline"):
            edit()
    assert snapshot(pipeline.id) == before
    assert fresh(project, pipeline).stages[0].name == "Alice's"


def test_the_compare_and_set_catches_a_writer_in_between(project, build):
    """Another writer bumps the version after this edit's checks passed: the compare-and-set
    refuses the write and nothing is saved."""
    from sqlalchemy import event

    pipeline = build.pipeline(project, stages=[{"name": "Dev"}])
    before = snapshot(pipeline.id)

    bumped = []

    def other_writer(conn, cursor, statement, *args):
        if statement.startswith("UPDATE release_pipeline SET version") and not bumped:
            bumped.append(statement)
            conn.exec_driver_sql(
                f"UPDATE release_pipeline SET version = version + 1 WHERE id = {pipeline.id}"
            )

    event.listen(db.engine, "before_cursor_execute", other_writer)
    try:
        with pytest.raises(Conflict, match="Someone else changed this pipeline"):
            builder.update_stage(
                pipeline, pipeline.version, pipeline.stages[0].id, {"name": "Late"}, SYSTEM
            )
    finally:
        event.remove(db.engine, "before_cursor_execute", other_writer)
    assert bumped
    assert snapshot(pipeline.id) == before  # the other writer's bump was rolled back too


def test_every_saved_edit_bumps_the_version(project, build):
    pipeline = build.pipeline(project, stages=[{"name": "Dev"}])
    version = pipeline.version
    builder.update_details(pipeline, version, SYSTEM, name="Renamed", description="d")
    assert fresh(project, pipeline).version == version + 1


# --- publish -------------------------------------------------------------------------------------


def test_publish_an_empty_pipeline_is_refused(project):
    pipeline = builder.create_pipeline(project, "Empty", SYSTEM)
    with pytest.raises(Invalid) as error:
        builder.publish_pipeline(pipeline, 1, SYSTEM)
    assert error.value.field_errors == {"publish": ["Add at least one stage before publishing."]}
    assert fresh(project, pipeline).status == "draft"


def test_publish_lists_every_problem_at_once(project, make, build):
    beta = make.segment(project, "Beta")
    pipeline = build.pipeline(
        project,
        stages=[
            {"name": "Dev", "env": "Development"},
            {"name": "No env", "actions": []},
            {
                "name": "Seg",
                "env": "Staging",
                "actions": [
                    {
                        "action_type": "TOGGLE_FEATURE_FOR_SEGMENT",
                        "enabled": "true",
                        "segment_id": str(beta.id),
                    },
                ],
            },
        ],
    )
    # Things the editor's checks refuse, but which rows can still come to hold (a segment made
    # a system one, an unnamed stage from older data): publish re-checks what is stored.
    seg_stage = pipeline.stages[2]
    beta.is_system = True
    pipeline.stages[0].name = ""
    seg_stage.trigger_type = "WAIT_FOR"
    seg_stage.wait_seconds = 0
    db.session.commit()
    pipeline = fresh(project, pipeline)
    with pytest.raises(Invalid) as error:
        builder.publish_pipeline(pipeline, pipeline.version, SYSTEM)
    assert error.value.field_errors["publish"] == [
        "Stage 1: give it a name.",
        "Stage 2 (No env): choose an environment.",
        "Stage 2 (No env): add at least one action.",
        "Stage 3 (Seg): the wait must be more than 0 and at most 365 days.",
        "Stage 3 (Seg), action 1: choose one of this project's segments.",
    ]
    assert fresh(project, pipeline).status == "draft"
    assert audits(pipeline.id, "RELEASE_PIPELINE_PUBLISHED") == []


def test_publish_problems_for_stored_rollouts_and_types(project, build):
    pipeline = build.pipeline(
        project, stages=[{"name": "Dev", "env": "Development", "actions": [ROLLOUT]}]
    )
    action = pipeline.stages[0].actions[0]
    action.rollout_initial, action.rollout_step = 0, 101
    pipeline.stages[0].actions.append(StageAction(position=1, action_type="EXPLODE"))
    pipeline.stages[0].actions.append(
        StageAction(
            position=2,
            action_type="PHASED_ROLLOUT",
            enabled=True,
            rollout_initial=5,
            rollout_step=5,
            rollout_interval_seconds=60,
        )
    )
    pipeline.stages[0].trigger_type = "LATER"
    db.session.commit()
    problems = readiness.publish_problems(fresh(project, pipeline))
    assert problems == [
        "Stage 1 (Dev): unknown trigger 'LATER'.",
        "Stage 1 (Dev), action 1: the initial percentage must be more than 0 % and at most 100 %.",
        "Stage 1 (Dev), action 1: the increase must be more than 0 % and at most 100 %.",
        "Stage 1 (Dev), action 2: unknown action type 'EXPLODE'.",
        "Stage 1 (Dev): at most one phased rollout per stage.",
    ]


def test_publish_makes_it_immutable_and_audits(project, editor, build):
    pipeline = build.three_stages(project)
    builder.publish_pipeline(pipeline, pipeline.version, Actor.for_user(editor))
    pipeline = fresh(project, pipeline)
    assert pipeline.status == "published"
    assert pipeline.published_by_id == editor.id and pipeline.published_at is not None
    [entry] = audits(pipeline.id, "RELEASE_PIPELINE_PUBLISHED")
    assert [s["name"] for s in entry.after["stages"]] == ["Development", "Staging", "Production"]


def test_published_pipelines_refuse_every_edit(project, make, build):
    pipeline = build.three_stages(project, publish=True)
    stage, action = pipeline.stages[0], pipeline.stages[0].actions[0]
    v = pipeline.version
    before = snapshot(pipeline.id)
    edits = [
        lambda: builder.update_details(pipeline, v, SYSTEM, name="New"),
        lambda: builder.add_stage(pipeline, v, SYSTEM, name="More"),
        lambda: builder.update_stage(pipeline, v, stage.id, {"name": "X"}, SYSTEM),
        lambda: builder.update_stage(pipeline, v, stage.id, {"trigger_type": "BOGUS"}, SYSTEM),
        lambda: builder.move_stage(pipeline, v, stage.id, "down", SYSTEM),
        lambda: builder.remove_stage(pipeline, v, stage.id, SYSTEM),
        lambda: builder.remove_stage(pipeline, v, 999999, SYSTEM),
        lambda: builder.add_action(pipeline, v, stage.id, TOGGLE, SYSTEM),
        lambda: builder.update_action(pipeline, v, action.id, {"action_type": "?"}, SYSTEM),
        lambda: builder.move_action(pipeline, v, action.id, "down", SYSTEM),
        lambda: builder.remove_action(pipeline, v, action.id, SYSTEM),
        lambda: builder.publish_pipeline(pipeline, v, SYSTEM),
    ]
    for edit in edits:
        with pytest.raises(Conflict, match="published and cannot be changed"):
            edit()
    assert snapshot(pipeline.id) == before


# --- unpublish, delete, clone --------------------------------------------------------------------


def _run(project, pipeline, make, **kwargs):
    feature = make.feature(project)
    run = PipelineRun(
        project_id=project.id,
        pipeline_id=pipeline.id,
        feature_id=feature.id,
        stage_id=pipeline.stages[0].id,
        **kwargs,
    )
    db.session.add(run)
    db.session.commit()
    return run


def test_unpublish_and_delete_wait_until_no_flag_is_in_flight(project, make, build):
    pipeline = build.three_stages(project, publish=True)
    run = _run(project, pipeline, make)
    with pytest.raises(Conflict, match="in flight"):
        builder.unpublish_pipeline(pipeline, SYSTEM)
    with pytest.raises(Conflict, match="in flight"):
        builder.delete_pipeline(pipeline, SYSTEM)
    assert fresh(project, pipeline).status == "published"
    run.ended_at, run.end_reason, run.status = now(), "launched", "launched"
    db.session.commit()
    builder.unpublish_pipeline(fresh(project, pipeline), SYSTEM)
    pipeline = fresh(project, pipeline)
    assert pipeline.status == "draft"
    builder.add_stage(pipeline, pipeline.version, SYSTEM, name="Editable again")
    builder.delete_pipeline(fresh(project, pipeline), SYSTEM)
    with pytest.raises(NotFound):
        fresh(project, pipeline)
    assert db.session.get(ReleasePipeline, pipeline.id).deleted_at is not None
    events = [e.event_type for e in audits(pipeline.id)]
    assert "RELEASE_PIPELINE_UNPUBLISHED" in events and events[-1] == "RELEASE_PIPELINE_DELETED"
    assert audits(pipeline.id)[-1].object_label == pipeline.name


def test_a_stage_flags_went_through_stays_after_unpublish(project, make, build):
    pipeline = build.three_stages(project, publish=True)
    _run(project, pipeline, make, status="launched", ended_at=now(), end_reason="launched")
    builder.unpublish_pipeline(fresh(project, pipeline), SYSTEM)
    pipeline = fresh(project, pipeline)
    with pytest.raises(Conflict, match=r"Stage 1 \(Development\) has release history"):
        builder.remove_stage(pipeline, pipeline.version, pipeline.stages[0].id, SYSTEM)
    pipeline = fresh(project, pipeline)
    assert [stage.name for stage in pipeline.stages] == ["Development", "Staging", "Production"]
    builder.remove_stage(pipeline, pipeline.version, pipeline.stages[2].id, SYSTEM)
    assert [stage.name for stage in fresh(project, pipeline).stages] == ["Development", "Staging"]


def test_unpublish_a_draft_is_refused(project):
    pipeline = builder.create_pipeline(project, "P", SYSTEM)
    with pytest.raises(Conflict, match="already a draft"):
        builder.unpublish_pipeline(pipeline, SYSTEM)


def test_clone_copies_stages_and_actions_into_a_draft(project, make, build):
    beta = make.segment(project, "Beta")
    source = build.pipeline(
        project,
        name="Web",
        stages=[
            {"name": "Dev", "env": "Development"},
            {
                "name": "Prod",
                "env": "Production",
                "wait": 3600,
                "actions": [
                    {
                        "action_type": "UPDATE_FEATURE_VALUE_FOR_SEGMENT",
                        "value": "on",
                        "segment_id": str(beta.id),
                    },
                    ROLLOUT,
                ],
            },
        ],
        publish=True,
    )
    copy = builder.clone_pipeline(source, SYSTEM)
    copy = fresh(project, copy)
    assert (copy.name, copy.status, copy.version) == ("Web (copy)", "draft", 1)

    def shape(p):
        return [
            (
                s.position,
                s.name,
                s.environment_id,
                s.trigger_type,
                s.wait_seconds,
                [
                    (
                        a.position,
                        a.action_type,
                        a.enabled,
                        a.value,
                        a.sets_value,
                        a.segment_id,
                        a.rollout_initial,
                        a.rollout_step,
                        a.rollout_interval_seconds,
                    )
                    for a in s.actions
                ],
            )
            for s in p.stages
        ]

    assert shape(copy) == shape(source)
    assert {s.id for s in copy.stages}.isdisjoint({s.id for s in source.stages})
    [entry] = audits(copy.id, "RELEASE_PIPELINE_CLONED")
    assert entry.before == {"source_id": source.id, "source_name": "Web"}
    named = builder.clone_pipeline(source, SYSTEM, "Web v2")
    assert named.name == "Web v2"


@pytest.mark.parametrize(("name", "message"), [("z" * 256, "At most 255 characters.")])
def test_clone_refuses_bad_names(project, build, name, message):
    source = build.pipeline(project)
    with pytest.raises(Invalid) as error:
        builder.clone_pipeline(source, SYSTEM, name)
    assert error.value.field_errors == {"name": [message]}


def test_clone_of_a_long_name_is_cut_to_fit(project):
    source = builder.create_pipeline(project, "n" * 255, SYSTEM)
    assert len(builder.clone_pipeline(source, SYSTEM).name) == 255


# --- list, values, segments ----------------------------------------------------------------------


def test_list_counts_stages_flags_in_flight_and_recent_launches(project, make, build):
    a = build.three_stages(project, publish=True)
    b = builder.create_pipeline(project, "Another", SYSTEM)
    gone = builder.create_pipeline(project, "Gone", SYSTEM)
    builder.delete_pipeline(gone, SYSTEM)
    _run(project, a, make)
    _run(project, a, make)
    _run(
        project,
        a,
        make,
        ended_at=now() - timedelta(days=2),
        end_reason="launched",
        status="launched",
    )
    _run(
        project,
        a,
        make,
        ended_at=now() - timedelta(days=31),
        end_reason="launched",
        status="launched",
    )
    _run(project, a, make, ended_at=now(), end_reason="removed", status="removed")
    rows = {row.pipeline.name: row for row in catalog.list_pipelines(project.id)}
    assert set(rows) == {"Web release", "Another"}
    assert (
        rows["Web release"].stage_count,
        rows["Web release"].in_flight,
        rows["Web release"].launched_recently,
    ) == (3, 2, 1)
    assert (rows["Another"].stage_count, rows["Another"].in_flight) == (0, 0)
    assert b.id in {row.pipeline.id for row in rows.values()}


def test_list_uses_a_fixed_number_of_queries(app, project, build):
    from sqlalchemy import event

    for n in range(5):
        build.pipeline(project, name=f"P{n}", stages=[{"name": "A"}, {"name": "B"}])
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        rows = catalog.list_pipelines(project.id)
        [(row.pipeline.name, row.stage_count) for row in rows]
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert len(rows) == 5
    assert len(statements) == 4


@pytest.mark.parametrize(
    ("value_type", "raw", "fits"),
    [
        ("string", "hello", True),
        ("string", "42", False),
        ("string", '"42"', True),
        ("integer", "42", True),
        ("integer", "true", False),
        ("integer", "4.2", False),
        ("boolean", "true", True),
        ("boolean", "1", False),
        ("none", "x", False),
        ("none", "", True),
        ("integer", "", True),
    ],
)
def test_check_values_fit(project, make, build, value_type, raw, fits):
    feature = make.feature(project, "checkout", value_type=value_type)
    pipeline = build.pipeline(
        project,
        stages=[
            {"name": "Dev", "actions": [{"action_type": "UPDATE_FEATURE_VALUE", "value": raw}]}
        ],
    )
    problems = describe.check_values_fit(pipeline, feature)
    assert (problems == []) is fits
    if not fits:
        assert problems[0].startswith("Stage 1 (Dev), action 1 sets the value")
        assert "checkout" in problems[0]


def test_segment_choices_and_users(project, make, build):
    beta = make.segment(project, "Beta")
    make.segment(project, "Hidden rollout", is_system=True)
    make.segment(make.project("Other"), "Theirs")
    assert [s.name for s in catalog.segment_choices(project.id)] == ["Beta"]
    pipeline = build.pipeline(
        project,
        stages=[
            {
                "name": "Dev",
                "actions": [
                    {
                        "action_type": "TOGGLE_FEATURE_FOR_SEGMENT",
                        "enabled": "true",
                        "segment_id": str(beta.id),
                    }
                ],
            }
        ],
    )
    assert [p.id for p in catalog.pipelines_using_segment(beta.id)] == [pipeline.id]
    builder.delete_pipeline(pipeline, SYSTEM)
    assert catalog.pipelines_using_segment(beta.id) == []


def test_get_pipeline_of_another_project_is_not_found(project, make):
    pipeline = builder.create_pipeline(make.project("Other"), "Theirs", SYSTEM)
    with pytest.raises(NotFound):
        catalog.get_pipeline(project.id, pipeline.id)
