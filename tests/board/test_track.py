"""A flag's track through its pipeline and its history there, on the flag page's panel."""

from datetime import timedelta

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import PipelineRun
from webapp.services.actors import Actor
from webapp.services.pages import track as track_page
from webapp.services.runs import controls, sweep

from .conftest import START


def moved_to_qa(project, pipe, editor, make, name="checkout"):
    flag = make.feature(project, name)
    controls.add_flag(project, pipe.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    return flag


def test_track_marks_done_current_and_next_with_times(clock, project, pipe, editor, make):
    flag = moved_to_qa(project, pipe, editor, make)
    clock.shift(3600)
    track = track_page.flag_track(project.id, flag.id)
    assert [(s.stage.name, s.state) for s in track.stops] == [
        ("Dev", "done"),
        ("QA", "current"),
        ("Prod", "next"),
    ]
    assert track.stops[0].completed_at == START and track.stops[1].entered_at == START
    assert track.card.status_text == "Waiting" and track.card.countdown == "23h"
    history = [item.what for item in track.history]
    assert "Entered Dev (Development)" in history and "Completed Dev (Development)" in history
    assert "Entered QA (Staging)" in history
    assert any("added to release pipeline Web release" in what for what in history)
    assert any(item.kind == "audit" and item.who for item in track.history)
    assert track.history == sorted(
        track.history, key=lambda i: (i.at, i.kind != "stage"), reverse=True
    )


def test_track_of_a_launched_flag_ticks_every_stage(clock, project, pipe, editor, make):
    flag = moved_to_qa(project, pipe, editor, make)
    run = db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == flag.id))
    run_id = run.id
    controls.advance_now(project, run_id, Actor.for_user(editor))
    sweep.drain()
    for _ in range(4):  # the rollout's steps: 10 → 40 → 70 → 100 %
        clock.shift(3600)
        sweep.drain()
    db.session.rollback()
    track = track_page.flag_track(project.id, flag.id)
    assert track.run.status == "launched"
    assert [s.state for s in track.stops] == ["done", "done", "done"]
    assert track.card.status_text == "Launched"


def test_removed_flag_shows_stages_not_reached(clock, project, pipe, editor, make):
    flag = moved_to_qa(project, pipe, editor, make)
    run_id = db.session.scalar(select(PipelineRun.id).where(PipelineRun.feature_id == flag.id))
    controls.remove(project, run_id, Actor.for_user(editor))
    track = track_page.flag_track(project.id, flag.id)
    assert [s.state for s in track.stops] == ["done", "next", "skipped"]
    assert track.card is None
    assert track.flag_track(project.id, make.feature(project, "never").id) is None


def test_flag_page_panel_shows_the_track_and_history(
    clock, client, login, viewer, project, pipe, editor, make
):
    flag = moved_to_qa(project, pipe, editor, make)
    login(client, viewer)
    html = client.get(
        f"/projects/{project.id}/flags/{flag.id}/pipeline", headers={"HX-Request": "true"}
    ).text
    assert '<ol class="track" aria-label="Stages">' in html
    assert 'class="stop done"' in html and 'class="stop current" aria-current="step"' in html
    assert "History in this pipeline" in html and "Entered QA (Staging)" in html
    assert "2030-01-06 09:00 UTC" in html
    clock.shift(timedelta(days=1).total_seconds())
    assert "here since" in client.get(f"/projects/{project.id}/flags/{flag.id}/pipeline").text


def test_history_keeps_the_stages_as_they_were_when_the_flag_went_through(
    clock, client, login, viewer, project, editor, make, make_pipeline, envs
):
    """Issue 13: a pipeline changed after a flag ran through it (unpublished, a stage renamed,
    two stages added) leaves the flag's track and history exactly as they were."""
    from webapp.services.pipelines import builder
    from webapp.services.runs import controls, sweep

    who = Actor.for_user(editor)
    pipeline = make_pipeline([{"env": "Development", "name": "Dev"},
                              {"env": "Staging", "name": "QA"}], name="CR test")
    flag = make.feature(project, "recommendations")
    controls.add_flag(project, pipeline.id, flag.id, who)
    sweep.drain()
    before = track_page.flag_track(project.id, flag.id)
    assert before.run.status == "launched"
    shown = [(s.stage.name, s.stage.environment, s.state) for s in before.stops]
    assert shown == [("Dev", "Development", "done"), ("QA", "Staging", "done")]
    history = [(item.at, item.what) for item in before.history]
    page_before = login(client, viewer).get(f"/projects/{project.id}/flags/{flag.id}/pipeline")
    assert "QA" in page_before.text

    builder.unpublish_pipeline(pipeline, who)
    pipeline = db.session.get(type(pipeline), pipeline.id)
    qa = pipeline.stages[1]
    builder.update_stage(pipeline, pipeline.version, qa.id, {"name": "Quality gate"}, who)
    for name in ("Canary", "Soak"):
        pipeline = db.session.get(type(pipeline), pipeline.id)
        builder.add_stage(pipeline, pipeline.version, who, name=name,
                            environment_id=envs["Production"].id)
    db.session.expire_all()
    assert [s.name for s in db.session.get(type(pipeline), pipeline.id).stages] == [
        "Dev", "Quality gate", "Canary", "Soak"]

    after = track_page.flag_track(project.id, flag.id)
    assert [(s.stage.name, s.stage.environment, s.state) for s in after.stops] == shown
    assert [(item.at, item.what) for item in after.history] == history
    page = client.get(f"/projects/{project.id}/flags/{flag.id}/pipeline").text
    assert "QA" in page
    for later in ("Canary", "Soak", "Quality gate", "not reached", ">?<"):
        assert later not in page, later
