"""Builder edits by one person on one pipeline within minutes are one audit entry."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry
from webapp.services.actors import Actor
from webapp.services.governance import audit_log
from webapp.services.governance.audit_log import AuditFilter, DiffLine
from webapp.services.pipelines import builder, catalog, drafts, edit_sessions

START = datetime(2030, 3, 2, 9, 0, tzinfo=UTC)
EDITED = "RELEASE_PIPELINE_UPDATED"


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(START, tick=False)
    return time_machine


@pytest.fixture
def people(make, project):
    return {name: Actor.for_user(make.user(project=project, email=f"{name}@example.com"))
            for name in ("ann", "bob")}


@pytest.fixture
def draft(project, people, make, clock):
    make.environments(project)
    return builder.create_pipeline(project, "Web release", people["ann"])


def fresh(project, pipeline):
    db.session.rollback()
    return catalog.get_pipeline(project.id, pipeline.id)


def edits(pipeline):
    return db.session.scalars(select(AuditEntry).where(
        AuditEntry.pipeline_id == pipeline.id, AuditEntry.event_type == EDITED)
        .order_by(AuditEntry.id)).all()


def rename(project, pipeline, who, name):
    pipeline = fresh(project, pipeline)
    builder.update_details(pipeline, pipeline.version, who, name=name,
                             description=pipeline.description)


def add_stage(project, pipeline, who, name):
    pipeline = fresh(project, pipeline)
    return builder.add_stage(pipeline, pipeline.version, who, name=name)


def test_edits_within_the_window_are_one_entry_with_a_combined_diff(project, draft, people,
                                                                    clock):
    ann = people["ann"]
    rename(project, draft, ann, "Web v2")
    clock.shift(60)
    stage = add_stage(project, draft, ann, "Dev")
    clock.shift(60)
    pipeline = fresh(project, draft)
    builder.update_stage(pipeline, pipeline.version, stage.id, {"name": "Development"}, ann)
    clock.shift(edit_sessions.COALESCE_WINDOW - timedelta(minutes=2, seconds=1))
    rename(project, draft, ann, "Web v3")

    [entry] = edits(draft)
    assert entry.created_at.replace(tzinfo=UTC) == START  # the session's first edit
    assert entry.object_label == "Web v3"
    # First before -> last after per field; a stage added then renamed keeps both steps.
    assert entry.before == {"name": "Web release", "Stage 1 · name": "Dev"}
    assert entry.after["name"] == "Web v3" and entry.after["Stage 1 · name"] == "Development"
    assert entry.after["Stage 1"]["name"] == "Dev" and "Stage 1" not in entry.before
    assert entry.message.count(edit_sessions.EDITS_JOIN) == 3
    assert entry.message.startswith("Release pipeline Web v3: renamed to Web v2; ")

    [shown] = [e for e in audit_log.page(project.id, AuditFilter(), masked=False).entries
               if e.event_type == EDITED]
    assert shown.label == "Pipeline edited"
    assert shown.sentence.startswith("Pipeline Web v3 edited: renamed to Web v2; stage 1 (Dev) "
                                     "added; stage 1 (Development) changed: name and 1 more edit")
    assert DiffLine("name", "Web release", "Web v3") in shown.diff
    assert DiffLine("Stage 1 · name", "Dev", "Development") in shown.diff


def test_a_field_changed_back_drops_out_of_the_diff(project, draft, people, clock):
    rename(project, draft, people["ann"], "Other")
    rename(project, draft, people["ann"], "Web release")
    [entry] = edits(draft)
    assert entry.before == {} and entry.after == {}


def test_an_edit_after_the_window_starts_a_new_entry(project, draft, people, clock):
    rename(project, draft, people["ann"], "Web v2")
    clock.shift(edit_sessions.COALESCE_WINDOW)
    rename(project, draft, people["ann"], "Web v3")
    first, second = edits(draft)
    assert (first.before, first.after) == ({"name": "Web release"}, {"name": "Web v2"})
    assert (second.before, second.after) == ({"name": "Web v2"}, {"name": "Web v3"})


def test_two_people_never_share_an_entry(project, draft, people, clock):
    ann, bob = people["ann"], people["bob"]
    rename(project, draft, ann, "By Ann")
    clock.shift(10)
    rename(project, draft, bob, "By Bob")
    clock.shift(10)
    rename(project, draft, ann, "By Ann again")  # Bob's entry came between: a new one
    entries = edits(draft)
    assert [e.actor_label for e in entries] == ["ann@example.com", "bob@example.com",
                                                "ann@example.com"]
    assert [e.after["name"] for e in entries] == ["By Ann", "By Bob", "By Ann again"]


def test_publishing_ends_the_session(project, draft, people, clock, make):
    ann = people["ann"]
    stage = add_stage(project, draft, ann, "Dev")
    pipeline = fresh(project, draft)
    environment = make.environments(project)[0]
    builder.update_stage(pipeline, pipeline.version, stage.id,
                           {"environment_id": str(environment.id)}, ann)
    pipeline = fresh(project, draft)
    builder.add_action(pipeline, pipeline.version, stage.id,
                         {"action_type": "TOGGLE_FEATURE", "enabled": "true"}, ann)
    pipeline = fresh(project, draft)
    builder.publish_pipeline(pipeline, pipeline.version, ann)
    pipeline = fresh(project, draft)
    builder.unpublish_pipeline(pipeline, ann)
    clock.shift(30)
    rename(project, draft, ann, "After publishing")
    events = db.session.scalars(select(AuditEntry.event_type).where(
        AuditEntry.pipeline_id == draft.id).order_by(AuditEntry.id)).all()
    assert events == ["RELEASE_PIPELINE_CREATED", EDITED, "RELEASE_PIPELINE_PUBLISHED",
                      "RELEASE_PIPELINE_UNPUBLISHED", EDITED]
    assert edits(draft)[-1].after == {"name": "After publishing"}


def test_an_api_definition_update_is_never_extended(project, draft, people, clock):
    """Only builder sessions (marked by their key) are extended: another writer's
    RELEASE_PIPELINE_UPDATED entry of the same person stays as it was written."""
    drafts.audit_pipeline(people["ann"], fresh(project, draft), EDITED, "stages replaced",
                             before={"stages": []}, after={"stages": []})
    db.session.commit()
    rename(project, draft, people["ann"], "Web v2")
    first, second = edits(draft)
    assert first.message == "stages replaced" and second.after == {"name": "Web v2"}


def test_merge_keeps_the_first_before_and_the_last_after():
    absent = edit_sessions.ABSENT
    before, after = edit_sessions.merge({}, {}, {"a": (1, 2), "Stage 2": (absent, {"n": 1})})
    assert (before, after) == ({"a": 1}, {"a": 2, "Stage 2": {"n": 1}})
    before, after = edit_sessions.merge(before, after, {"a": (2, 3), "Stage 2": ({"n": 1},
                                                                                 absent)})
    assert (before, after) == ({"a": 1}, {"a": 3})  # added then removed: nothing to say
